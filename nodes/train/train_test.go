package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/pipeline"
)

var (
	face0Bin string
	ortErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "face0-train-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ortErr = ort.Init(); ortErr != nil && !errors.Is(ortErr, ort.ErrNoLibrary) {
		fmt.Fprintln(os.Stderr, ortErr)
		os.Exit(1)
	}
	if ortErr == nil {
		if face0Bin, err = testplugin.Face0(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rig runs the train, face0 and image packs as real plugin processes.
type rig struct {
	catalog *engine.Catalog
	engine  *engine.Engine
	dirs    *pb.Dirs
}

// newDirs makes host folders with a tiny synthfaces dataset in the input folder.
func newDirs(t *testing.T) *pb.Dirs {
	t.Helper()
	if ortErr != nil {
		t.Skipf("skipping: %v", ortErr)
	}
	root := t.TempDir()
	dirs := &pb.Dirs{Input: filepath.Join(root, "input"), Output: filepath.Join(root, "output"), Temp: filepath.Join(root, "temp"), Models: filepath.Join(root, "models")}
	for _, d := range []string{dirs.Input, dirs.Output, dirs.Temp, dirs.Models} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := synthfaces.Generate(filepath.Join(dirs.Input, "synth"), synthfaces.Options{Seed: 1, Train: 8, HeldOut: -1, PerIdentity: 2, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	return dirs
}

// newRig starts the given packs as real plugin processes over dirs. The
// face0 pack lists the models present when it starts (the host asks for
// node specs once), so sampling a newly trained model needs a new rig.
func newRig(t *testing.T, dirs *pb.Dirs, packs ...string) *rig {
	t.Helper()
	env := []string{"FACE0_MODELS=" + dirs.Models}
	var srcs []host.Source
	for _, p := range packs {
		srcs = append(srcs, host.Source{Name: p, Path: face0Bin, Args: []string{"plugin", p}, Env: env})
	}
	mgr, problems := host.Start(context.Background(), srcs, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start packs: %v", problems)
	}
	t.Cleanup(mgr.Close)
	cat, errs := engine.NewCatalog(mgr.Nodes(), mgr.Types())
	if len(errs) > 0 {
		t.Fatalf("catalog: %v", errs)
	}
	return &rig{catalog: cat, engine: engine.New(mgr, engine.WithDirs(dirs)), dirs: dirs}
}

func (r *rig) run(ctx context.Context, t *testing.T, doc string, sink events.Sink) (*engine.Result, error) {
	t.Helper()
	w, _, err := workflow.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, doc)
	}
	plan, err := r.catalog.Compile(w, nil)
	if err != nil {
		return nil, err
	}
	return r.engine.Run(ctx, plan, engine.RunOptions{PromptID: "p", NoCache: true, Sink: sink})
}

func trainDoc(name string, steps, every int, resume bool) string {
	return fmt.Sprintf(`{"version": 1, "nodes": [{"id": "train", "type": "Train", "inputs": {
		"dataset": "synth", "steps": %d, "batch_size": 8, "learning_rate": 0.003, "model_name": %q,
		"checkpoint_every": %d, "resume": %v, "preset": "tiny"}}]}`, steps, name, every, resume)
}

const sampleDoc = `{"version": 1, "nodes": [
	{"id": "prompt", "type": "EncodeText", "inputs": {"model": "t1", "text": "a photo portrait of a smiling person, on a teal background"}},
	{"id": "face", "type": "RandomEmbedding", "inputs": {"model": "t1", "seed": 3}},
	{"id": "sampler", "type": "Face0Sampler", "inputs": {"model": "t1", "positive": {"node": "prompt", "output": "CONDITIONING"},
		"face_embedding": {"node": "face", "output": "embedding"}, "seed": 1, "steps": 10, "scheduler": "ddim", "w": 3, "c": 1, "a": 0}},
	{"id": "decode", "type": "Decode", "inputs": {"model": "t1", "latent": {"node": "sampler", "output": "LATENT"}}},
	{"id": "save", "type": "SaveImage", "inputs": {"images": {"node": "decode", "output": "IMAGE"}, "filename_prefix": "t1"}}]}`

// TestTrainThenSample trains through the Train node, then samples the new
// model with the face0 pack: EncodeText → Face0Sampler → Decode → SaveImage.
func TestTrainThenSample(t *testing.T) {
	dirs := newDirs(t)
	r := newRig(t, dirs, "train")
	rec := &events.Recorder{}
	res, err := r.run(context.Background(), t, trainDoc("t1", 30, 10, false), rec)
	if err != nil {
		for _, e := range rec.Events() {
			t.Log(e.Type, e.Message, e.Err)
		}
		t.Fatalf("train: %v", err)
	}
	var model string
	if v := res.Outputs["train"].Values["model"]; v != nil {
		model = v.GetString_()
	}
	if model != "t1" {
		t.Errorf("Train output model = %q", model)
	}
	if n := len(rec.Of(events.Progress)); n < 30 {
		t.Errorf("%d progress events", n)
	}
	if len(rec.Of(events.Preview)) == 0 {
		t.Error("no loss-curve preview")
	}
	var stepLog bool
	for _, e := range rec.Of(events.Log) {
		stepLog = stepLog || strings.Contains(e.Message, "steps/s ETA")
	}
	if !stepLog {
		t.Error("no step log line with steps/s and ETA")
	}
	if err := sdmodel.Validate(filepath.Join(r.dirs.Models, "t1")); err != nil {
		t.Fatal(err)
	}

	r = newRig(t, dirs, "face0", "image")
	rec = &events.Recorder{}
	if _, err := r.run(context.Background(), t, sampleDoc, rec); err != nil {
		for _, e := range rec.Events() {
			t.Log(e.Type, e.Message, e.Err)
		}
		t.Fatalf("sample: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(r.dirs.Output, "t1_*.png"))
	if len(files) != 1 {
		t.Fatalf("saved %v", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
		t.Errorf("sampled image is %v, want 32x32", b)
	}
}

// TestTrainCancelResume cancels a Train node mid-run (through the engine,
// in a real plugin process), checks the checkpoint it left, and resumes.
func TestTrainCancelResume(t *testing.T) {
	r := newRig(t, newDirs(t), "train")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	sink := events.SinkFunc(func(e events.Event) {
		if e.Type == events.Log && strings.HasPrefix(e.Message, "step 1/") {
			once.Do(cancel)
		}
	})
	// checkpoint_every is past the run's end: the only checkpoint is the
	// one the cancellation writes.
	_, err := r.run(ctx, t, trainDoc("t2", 200, 1000, true), sink)
	if err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	// The engine returns at once; the plugin writes the checkpoint as it
	// stops (well within the SDK's 10 s cancellation grace).
	var cks []string
	for range 100 {
		if cks, _ = training.Checkpoints(filepath.Join(pipeline.DefaultRunDir(filepath.Join(r.dirs.Models, "t2")), pipeline.CheckpointsDir)); len(cks) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(cks) == 0 {
		t.Fatalf("no checkpoint after cancellation (%v)", err)
	}
	var st struct {
		Step int `json:"step"`
	}
	b, _ := os.ReadFile(filepath.Join(cks[len(cks)-1], training.StateFile))
	_ = json.Unmarshal(b, &st)
	if st.Step < 1 || st.Step >= 200 {
		t.Fatalf("latest checkpoint at step %d", st.Step)
	}
	rec := &events.Recorder{}
	if _, err := r.run(context.Background(), t, trainDoc("t2", st.Step+3, 100, true), rec); err != nil {
		t.Fatalf("resume: %v", err)
	}
	resumed := false
	for _, e := range rec.Of(events.Log) {
		resumed = resumed || strings.Contains(e.Message, fmt.Sprintf("at step %d", st.Step))
	}
	if !resumed {
		t.Error("the second run did not resume from the checkpoint")
	}
	if err := sdmodel.Validate(filepath.Join(r.dirs.Models, "t2")); err != nil {
		t.Fatal(err)
	}
}

func TestResolveDataset(t *testing.T) {
	root := t.TempDir()
	input := filepath.Join(root, "input")
	other := filepath.Join(root, "other")
	for _, d := range []string{filepath.Join(input, "ds"), filepath.Join(other, "ds")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(other, filepath.Join(input, "escape")); err != nil {
		t.Fatal(err)
	}
	dirs := &pb.Dirs{Input: input}
	t.Setenv(DatasetsEnv, "")
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{"ds", true},
		{filepath.Join(input, "ds"), true},
		{"../other/ds", false},
		{filepath.Join(other, "ds"), false},
		{"escape/ds", false},
		{"missing", false},
	} {
		_, err := resolveDataset(dirs, c.path)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.path, err, c.ok)
		}
	}
	t.Setenv(DatasetsEnv, other)
	if _, err := resolveDataset(dirs, filepath.Join(other, "ds")); err != nil {
		t.Errorf("with %s set: %v", DatasetsEnv, err)
	}
	for _, bad := range []string{"", "a/b", "..", ".train", `a\b`} {
		if checkName(bad) == nil {
			t.Errorf("model name %q accepted", bad)
		}
	}
}
