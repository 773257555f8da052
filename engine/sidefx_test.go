package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	pb "github.com/face0/face0/plugins/proto"
)

// sideEffectRig runs workflows on the test pack with a cache and folders
// that a test can switch between runs.
type sideEffectRig struct {
	*rig
	dirs *pb.Dirs
}

func newSideEffectRig(t *testing.T) *sideEffectRig {
	r := newRig(t, t.TempDir())
	return &sideEffectRig{rig: r, dirs: &pb.Dirs{Output: t.TempDir()}}
}

// runIn runs src, wanting w and after, with out as the output folder; the engine is made anew each
// time, as each `face0 run` makes its own.
func (r *sideEffectRig) runIn(t *testing.T, out, src string) (*engine.Result, *events.Recorder) {
	t.Helper()
	plan, err := r.catalog.Compile(parse(t, src), []string{"w", "after"})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(r.mgr, engine.WithCache(r.cache), engine.WithDirs(&pb.Dirs{Output: out}))
	// As face0 run does before it exits: the cache writes, made in the
	// background, are done before the next process looks.
	defer e.Wait()
	rec := &events.Recorder{}
	res, err := e.Run(context.Background(), plan, engine.RunOptions{PromptID: "p", Sink: rec})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res, rec
}

// written lists the files a result says a node wrote, as paths under out,
// and fails unless each holds want.
func written(t *testing.T, res *engine.Result, node, out, want string) []string {
	t.Helper()
	var paths []string
	for _, it := range res.Outputs[node].GetUi()["files"].GetList().GetItems() {
		f := it.GetRecord().GetFields()
		p := filepath.Join(out, f["subfolder"].GetString_(), f["filename"].GetString_())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s reports %s: %v", node, p, err)
		} else if string(b) != want {
			t.Errorf("%s: %s holds %q, want %q", node, p, b, want)
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		t.Errorf("%s reports no files", node)
	}
	return paths
}

func filesIn(t *testing.T, dir string) int {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	return len(m)
}

const writeDoc = `{"version":1,"nodes":[
	{"id":"c","type":"Const","inputs":{"value":7}},
	{"id":"w","type":"WriteText","inputs":{"value":{"node":"c","output":"INT"},"prefix":"seven"}},
	{"id":"after","type":"Add","inputs":{"a":{"node":"w","output":"INT"},"b":1}}]}`

// TestSideEffectsFollowEveryRun is the engine's rule for nodes with side
// effects: a cached result counts only where its effect is in place, in
// this run's folders; otherwise the node runs again from cached inputs.
func TestSideEffectsFollowEveryRun(t *testing.T) {
	r := newSideEffectRig(t)
	a, b := t.TempDir(), t.TempDir()
	run := func(out string) (*engine.Result, *events.Recorder) {
		res, rec := r.runIn(t, out, writeDoc)
		if v := res.Outputs["after"].GetValues()["INT"].GetInt(); v != 8 {
			t.Fatalf("after = %d, want 8", v)
		}
		return res, rec
	}

	res, rec := run(a)
	first := written(t, res, "w", a, "7\n")
	if got := executedNodes(rec); len(got) != 3 {
		t.Fatalf("first run executed %v", got)
	}

	// Unchanged, files in place: nothing runs, the same file is reported.
	res, rec = run(a)
	if got := executedNodes(rec); len(got) != 0 {
		t.Errorf("unchanged run executed %v", got)
	}
	if again := written(t, res, "w", a, "7\n"); !slices.Equal(again, first) {
		t.Errorf("reported %v, first run %v", again, first)
	}

	// Another output folder: the writer runs (its input from the cache) and
	// writes there. The folders are part of its key, so what follows it runs
	// too: a node's values may name where it wrote.
	res, rec = run(b)
	if got := executedNodes(rec); !slices.Equal(got, []string{"w", "after"}) {
		t.Errorf("into another folder executed %v, want [w after]", got)
	}
	written(t, res, "w", b, "7\n")

	// The file deleted: the writer runs again, says why, and the file is
	// back. What follows it stays cached: its value did not change.
	if err := os.Remove(first[0]); err != nil {
		t.Fatal(err)
	}
	res, rec = run(a)
	if got := executedNodes(rec); !slices.Equal(got, []string{"w"}) {
		t.Errorf("after deleting the file executed %v, want [w]", got)
	}
	written(t, res, "w", a, "7\n")
	// A log event says why, after the cached set (which clients expect
	// right after the start).
	var types []events.Type
	told := false
	for _, e := range rec.Events() {
		types = append(types, e.Type)
		if e.Type == events.Log && e.Node == "w" && strings.Contains(e.Message, "is gone") {
			told = true
			if !slices.Contains(types, events.Cached) {
				t.Errorf("the reason came before the cached set: %v", types)
			}
		}
	}
	if !told {
		t.Errorf("no log event says why w ran again: %v", rec.Of(events.Log))
	}

	// The file replaced by other content: left as it is, the node's file
	// written beside it.
	now := written(t, res, "w", a, "7\n")[0]
	if err := os.WriteFile(now, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, rec = run(a)
	if got := executedNodes(rec); !slices.Equal(got, []string{"w"}) {
		t.Errorf("after replacing the file executed %v, want [w]", got)
	}
	if p := written(t, res, "w", a, "7\n")[0]; p == now {
		t.Errorf("reported the replaced file %s", p)
	}
	if b, _ := os.ReadFile(now); string(b) != "mine" {
		t.Errorf("the user's file was overwritten: %q", b)
	}
	if n := filesIn(t, a); n != 2 {
		t.Errorf("%d files in the output folder, want the user's and the node's", n)
	}

	// Run again with no cache entry at all: the identical file is reused,
	// not duplicated.
	res, rec = r.runIn(t, a, strings.Replace(writeDoc, `"c","type":"Const","inputs":{"value":7}`, `"c","type":"Add","inputs":{"a":6,"b":1}`, 1))
	if got := executedNodes(rec); !slices.Contains(got, "w") {
		t.Errorf("a new key did not run w: %v", got)
	}
	written(t, res, "w", a, "7\n")
	if n := filesIn(t, a); n != 2 {
		t.Errorf("%d files after re-running with the same content, want 2", n)
	}
}

// TestSideEffectsWithoutCheckAlwaysRun: a node with side effects that
// cannot check them runs every time, and one whose check fails (here, it
// panics) runs again rather than failing the run.
func TestSideEffectsWithoutCheckAlwaysRun(t *testing.T) {
	for _, typ := range []string{"WriteTextUnchecked", "WriteTextBadCheck"} {
		t.Run(typ, func(t *testing.T) {
			r := newSideEffectRig(t)
			out := t.TempDir()
			doc := strings.Replace(writeDoc, `"WriteText"`, `"`+typ+`"`, 1)
			for i := range 3 {
				res, rec := r.runIn(t, out, doc)
				got := executedNodes(rec)
				want := []string{"c", "w", "after"}
				if i > 0 {
					want = []string{"w"}
				}
				if !slices.Equal(got, want) {
					t.Errorf("run %d executed %v, want %v", i+1, got, want)
				}
				written(t, res, "w", out, "7\n")
				if n := filesIn(t, out); n != 1 {
					t.Errorf("run %d: %d files, want 1 (the same content is reused)", i+1, n)
				}
			}
		})
	}
}

// BenchmarkCachedSideEffect: what checking a cached writer costs. Three
// runs of Const → writer, each median per run, measured together: all
// cached with the writer checked (one Verify call, which hashes its file),
// a pure node in its place all cached (the baseline), and the writer
// executed again each time (what a check saves).
func BenchmarkCachedSideEffect(b *testing.B) {
	r := newRig(b, b.TempDir())
	out := b.TempDir()
	e := engine.New(r.mgr, engine.WithCache(r.cache), engine.WithDirs(&pb.Dirs{Output: out}))
	ctx := context.Background()
	compile := func(doc string) *engine.Plan {
		p, err := r.catalog.Compile(parse(b, doc), []string{"w"})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	checked := compile(writeDoc)
	pure := compile(strings.Replace(writeDoc, `"type":"WriteText","inputs":{"value":{"node":"c","output":"INT"},"prefix":"seven"}`, `"type":"Add","inputs":{"a":{"node":"c","output":"INT"},"b":0}`, 1))
	rerun := compile(strings.Replace(writeDoc, `"WriteText"`, `"WriteTextUnchecked"`, 1))
	plans := []*engine.Plan{checked, pure, rerun}
	wantExec := []int{0, 0, 1}
	for _, p := range plans {
		if _, err := e.Run(ctx, p, engine.RunOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	times := make([][]time.Duration, len(plans))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, p := range plans {
			t0 := time.Now()
			res, err := e.Run(ctx, p, engine.RunOptions{})
			if err != nil || len(res.Executed) != wantExec[j] {
				b.Fatalf("plan %d: executed %v, err %v", j, res.Executed, err)
			}
			times[j] = append(times[j], time.Since(t0))
		}
	}
	c, p, x := median(times[0]), median(times[1]), median(times[2])
	b.ReportMetric(float64(c.Microseconds())/1000, "ms-checked")
	b.ReportMetric(float64(c)/float64(p), "x-pure-cached")
	b.ReportMetric(float64(c)/float64(x), "x-rerun")
}
