package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/plugins/host"
)

var testpackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "face0-engine-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testpackBin, err = testplugin.TestPack(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rig is a started host with the test pack, a catalog and an engine.
type rig struct {
	mgr     *host.Manager
	catalog *engine.Catalog
	engine  *engine.Engine
	cache   *cache.Store
}

func newRig(t testing.TB, cacheDir string) *rig {
	t.Helper()
	mgr, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: testpackBin}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start test pack: %v", problems)
	}
	cat, errs := engine.NewCatalog(mgr.Nodes(), mgr.Types())
	if len(errs) > 0 {
		t.Fatalf("catalog: %v", errs)
	}
	r := &rig{mgr: mgr, catalog: cat}
	var opts []engine.Option
	if cacheDir != "" {
		c, err := cache.Open(cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		r.cache = c
		opts = append(opts, engine.WithCache(c))
	}
	r.engine = engine.New(mgr, opts...)
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	r.engine.Wait()
	r.mgr.Close()
	if r.cache != nil {
		r.cache.Close()
		r.cache = nil
	}
}

func parse(t testing.TB, src string) *workflow.Workflow {
	t.Helper()
	w, _, err := workflow.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return w
}

// run compiles and runs, recording events.
func (r *rig) run(t testing.TB, w *workflow.Workflow, outputs ...string) (*engine.Result, *events.Recorder, error) {
	t.Helper()
	return r.runCtx(context.Background(), t, w, outputs...)
}

func (r *rig) runCtx(ctx context.Context, t testing.TB, w *workflow.Workflow, outputs ...string) (*engine.Result, *events.Recorder, error) {
	t.Helper()
	plan, err := r.catalog.Compile(w, outputs)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	rec := &events.Recorder{}
	res, err := r.engine.Run(ctx, plan, engine.RunOptions{PromptID: "p", Sink: rec})
	return res, rec, err
}

func executedNodes(rec *events.Recorder) []string {
	var out []string
	for _, e := range rec.Of(events.Executing) {
		out = append(out, e.Node)
	}
	return out
}

func chain(n int) string {
	var b strings.Builder
	b.WriteString(`{"version":1,"nodes":[{"id":"n0","type":"Const","inputs":{"value":1}}`)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, `,{"id":"n%d","type":"Add","inputs":{"a":{"node":"n%d","output":"INT"},"b":1}}`, i, i-1)
	}
	b.WriteString(`]}`)
	return b.String()
}

func lit(v any) workflow.Input {
	b, _ := json.Marshal(v)
	var in workflow.Input
	if err := in.UnmarshalJSON(b); err != nil {
		panic(err)
	}
	return in
}
