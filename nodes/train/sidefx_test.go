package train

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
)

// TestTrainLeavesItsModelEveryRun: the model folder Train writes is there
// after every run, also with the engine's cache on and after the folder was
// deleted, without training again (issue 12, item 1).
func TestTrainLeavesItsModelEveryRun(t *testing.T) {
	dirs := newDirs(t)
	mgr, problems := host.Start(context.Background(), []host.Source{{Name: "train", Path: face0Bin, Args: []string{"plugin", "train"},
		Env: []string{"FACE0_MODELS=" + dirs.Models}}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start the train pack: %v", problems)
	}
	defer mgr.Close()
	cat, errs := engine.NewCatalog(mgr.Nodes(), mgr.Types())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if d, ok := cat.Lookup("Train"); !ok || !d.Spec.SideEffects {
		t.Fatalf("Train does not declare side effects: %v", d.Spec)
	}
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := func(d *pb.Dirs) *events.Recorder {
		t.Helper()
		w, _, err := workflow.Parse([]byte(trainDoc("t3", 4, 100, true)))
		if err != nil {
			t.Fatal(err)
		}
		plan, err := cat.Compile(w, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := &events.Recorder{}
		e := engine.New(mgr, engine.WithCache(c), engine.WithDirs(d))
		if _, err := e.Run(context.Background(), plan, engine.RunOptions{PromptID: "p", Sink: rec}); err != nil {
			t.Fatalf("train: %v", err)
		}
		if err := sdmodel.Validate(filepath.Join(d.Models, "t3")); err != nil {
			t.Fatalf("after the run: %v", err)
		}
		return rec
	}
	run(dirs)
	if err := os.RemoveAll(filepath.Join(dirs.Models, "t3")); err != nil {
		t.Fatal(err)
	}
	rec := run(dirs)
	var resumed, trained bool
	for _, e := range rec.Of(events.Log) {
		resumed = resumed || strings.Contains(e.Message, "at step 4")
		trained = trained || strings.HasPrefix(e.Message, "step 1/")
	}
	if !resumed || trained {
		t.Errorf("after deleting the model: resumed %v, trained again %v", resumed, trained)
	}
	// Another models folder: the model is made there.
	other := &pb.Dirs{Input: dirs.Input, Output: dirs.Output, Temp: dirs.Temp, Models: t.TempDir()}
	run(other)
}
