package engine_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
)

func intOut(t *testing.T, res *engine.Result, node, out string) int64 {
	t.Helper()
	o, ok := res.Outputs[node]
	if !ok {
		t.Fatalf("no outputs for node %s (have %v)", node, res.Outputs)
	}
	return o.Values[out].GetInt()
}

func TestRunChain(t *testing.T) {
	r := newRig(t, "")
	res, rec, err := r.run(t, parse(t, chain(10)))
	if err != nil {
		t.Fatal(err)
	}
	if got := intOut(t, res, "n9", "INT"); got != 10 {
		t.Fatalf("n9 = %d, want 10", got)
	}
	if len(executedNodes(rec)) != 10 {
		t.Fatalf("executed %v", executedNodes(rec))
	}
	if len(rec.Of(events.Success)) != 1 || len(rec.Of(events.ExecutionStart)) != 1 {
		t.Fatal("missing start or success event")
	}
}

func TestOnlyNeededNodesRun(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[
		{"id":"a","type":"Const","inputs":{"value":1}},
		{"id":"b","type":"Add","inputs":{"a":{"node":"a","output":"INT"},"b":2}},
		{"id":"c","type":"Const","inputs":{"value":5}},
		{"id":"d","type":"Add","inputs":{"a":{"node":"c","output":"INT"}}}]}`)
	_, rec, err := r.run(t, w, "b")
	if err != nil {
		t.Fatal(err)
	}
	got := executedNodes(rec)
	sort.Strings(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ran %v, want only a and b", got)
	}
}

func TestCacheSkipsUnchangedAndRerunsChanged(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	w := parse(t, `{"version":1,"nodes":[
		{"id":"a","type":"Const","inputs":{"value":1}},
		{"id":"b","type":"Add","inputs":{"a":{"node":"a","output":"INT"},"b":2}},
		{"id":"c","type":"Add","inputs":{"a":{"node":"b","output":"INT"},"b":3}},
		{"id":"x","type":"Const","inputs":{"value":7}},
		{"id":"y","type":"Add","inputs":{"a":{"node":"x","output":"INT"},"b":{"node":"c","output":"INT"}}}]}`)
	if _, rec, err := r.run(t, w); err != nil || len(executedNodes(rec)) != 5 {
		t.Fatalf("first run: err %v, executed %v", err, executedNodes(rec))
	}
	res, rec, err := r.run(t, w)
	if err != nil {
		t.Fatal(err)
	}
	if n := executedNodes(rec); len(n) != 0 {
		t.Fatalf("second run executed %v, want none", n)
	}
	if got := intOut(t, res, "y", "INT"); got != 13 {
		t.Fatalf("cached y = %d, want 13", got)
	}
	cached := rec.Of(events.Cached)
	if len(cached) != 1 || len(cached[0].Nodes) != 5 {
		t.Fatalf("cached events %+v", cached)
	}

	// Changing b re-runs b and its descendants only.
	w.Node("b").Inputs["b"] = lit(20)
	_, rec, err = r.run(t, w)
	if err != nil {
		t.Fatal(err)
	}
	got := executedNodes(rec)
	sort.Strings(got)
	if !slices.Equal(got, []string{"b", "c", "y"}) {
		t.Fatalf("after changing b ran %v, want [b c y]", got)
	}

	// A new process (new host, new cache handle on the same folder) still hits.
	r.close()
	r2 := newRig(t, dir)
	res, rec, err = r2.run(t, w)
	if err != nil {
		t.Fatal(err)
	}
	if n := executedNodes(rec); len(n) != 0 {
		t.Fatalf("run in a new process executed %v, want none", n)
	}
	if got := intOut(t, res, "y", "INT"); got != 31 {
		t.Fatalf("y = %d, want 31", got)
	}
}

func TestNoCacheOptionBypasses(t *testing.T) {
	r := newRig(t, t.TempDir())
	w := parse(t, chain(3))
	r.run(t, w)
	plan, _ := r.catalog.Compile(w, nil)
	rec := &events.Recorder{}
	if _, err := r.engine.Run(context.Background(), plan, engine.RunOptions{NoCache: true, Sink: rec}); err != nil {
		t.Fatal(err)
	}
	if n := executedNodes(rec); len(n) != 3 {
		t.Fatalf("--no-cache run executed %v, want all 3", n)
	}
}

func TestNondeterministicNeverCached(t *testing.T) {
	r := newRig(t, t.TempDir())
	w := parse(t, `{"version":1,"nodes":[
		{"id":"r","type":"Random"},
		{"id":"s","type":"Add","inputs":{"a":{"node":"r","output":"INT"}}}]}`)
	r.run(t, w)
	_, rec, err := r.run(t, w)
	if err != nil {
		t.Fatal(err)
	}
	got := executedNodes(rec)
	sort.Strings(got)
	if !slices.Equal(got, []string{"r", "s"}) {
		t.Fatalf("second run executed %v, want r and its dependent s", got)
	}
}

func TestFailureStopsDependentsOnly(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[
		{"id":"a","type":"Const","inputs":{"value":1}},
		{"id":"bad","type":"Fail","inputs":{"message":"deliberate","after":{"node":"a","output":"INT"}}},
		{"id":"dep","type":"Add","inputs":{"a":{"node":"bad","output":"INT"}}},
		{"id":"dep2","type":"Add","inputs":{"a":{"node":"dep","output":"INT"}}},
		{"id":"other","type":"Add","inputs":{"a":{"node":"a","output":"INT"},"b":5}}]}`)
	res, rec, err := r.run(t, w, "dep2", "other")
	var ne *engine.NodeError
	if !errors.As(err, &ne) || ne.Node != "bad" || !strings.Contains(ne.Error(), "deliberate") {
		t.Fatalf("err = %v, want NodeError for bad", err)
	}
	if !slices.Equal(res.Skipped, []string{"dep", "dep2"}) {
		t.Fatalf("skipped %v", res.Skipped)
	}
	if got := intOut(t, res, "other", "INT"); got != 6 {
		t.Fatalf("independent branch: other = %d", got)
	}
	evs := rec.Of(events.Error)
	if len(evs) != 1 || evs[0].Node != "bad" {
		t.Fatalf("error events %+v", evs)
	}
	completed := evs[0].Completed
	sort.Strings(completed)
	if !slices.Equal(completed, []string{"a", "other"}) {
		t.Fatalf("completed %v, want [a other]", completed)
	}
}

func TestCrashIsolation(t *testing.T) {
	for _, tc := range []struct{ name, node, want string }{
		{"panic", "Panic", "panicked: boom"},
		{"exit", "Exit", "crashed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "")
			w := parse(t, `{"version":1,"nodes":[{"id":"c","type":"`+tc.node+`"}]}`)
			_, _, err := r.run(t, w)
			var ne *engine.NodeError
			if !errors.As(err, &ne) || ne.Node != "c" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want node c error containing %q", err, tc.want)
			}
			// The engine stays up and the plugin serves the next run.
			res, _, err := r.run(t, parse(t, chain(3)))
			if err != nil {
				t.Fatalf("run after %s: %v", tc.name, err)
			}
			if got := intOut(t, res, "n2", "INT"); got != 3 {
				t.Fatalf("n2 = %d", got)
			}
		})
	}
}

func TestCancellationStopsPromptly(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":60000,"steps":600}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &events.Recorder{}
	plan, err := r.catalog.Compile(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.engine.Run(ctx, plan, engine.RunOptions{Sink: rec})
		done <- err
	}()
	// Cancel once the node reports progress: it is surely running.
	deadline := time.Now().Add(20 * time.Second)
	for len(rec.Of(events.Progress)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, engine.ErrInterrupted) {
			t.Fatalf("err = %v, want ErrInterrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
	if len(rec.Of(events.Interrupted)) != 1 {
		t.Fatal("no interrupted event")
	}
	// The plugin is still usable.
	if _, _, err := r.run(t, parse(t, chain(2))); err != nil {
		t.Fatal(err)
	}
}

func TestIndependentBranchesRunConcurrently(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[
		{"id":"s1","type":"Sleep","inputs":{"ms":400,"steps":2,"value":1}},
		{"id":"s2","type":"Sleep","inputs":{"ms":400,"steps":2,"value":2}},
		{"id":"sum","type":"Add","inputs":{"a":{"node":"s1","output":"INT"},"b":{"node":"s2","output":"INT"}}}]}`)
	res, rec, err := r.run(t, w)
	if err != nil {
		t.Fatal(err)
	}
	// Both sleeps start before either finishes.
	var order []string
	for _, e := range rec.Events() {
		if (e.Type == events.Executing || e.Type == events.Executed) && e.Node != "sum" {
			order = append(order, string(e.Type)+":"+e.Node)
		}
	}
	if len(order) != 4 || !strings.HasPrefix(order[0], "executing") || !strings.HasPrefix(order[1], "executing") {
		t.Fatalf("branches ran one after the other: %v", order)
	}
	if got := intOut(t, res, "sum", "INT"); got != 3 {
		t.Fatalf("sum = %d", got)
	}
	if len(rec.Of(events.Progress)) != 4 || len(rec.Of(events.Log)) != 2 {
		t.Fatalf("progress/log events: %d/%d", len(rec.Of(events.Progress)), len(rec.Of(events.Log)))
	}
}

func TestEmbeddingSpaceChecked(t *testing.T) {
	r := newRig(t, "")
	ok := parse(t, `{"version":1,"nodes":[
		{"id":"e","type":"Embed","inputs":{"space":"b"}},
		{"id":"u","type":"UseEmbed","inputs":{"model":"mb","embedding":{"node":"e","output":"embedding"}}}]}`)
	res, _, err := r.run(t, ok)
	if err != nil {
		t.Fatal(err)
	}
	if got := intOut(t, res, "u", "INT"); got != 8 {
		t.Fatalf("u = %d", got)
	}
	bad := parse(t, `{"version":1,"nodes":[
		{"id":"e","type":"Embed","inputs":{"space":"a"}},
		{"id":"u","type":"UseEmbed","inputs":{"model":"mb","embedding":{"node":"e","output":"embedding"}}}]}`)
	_, err = r.catalog.Compile(bad, nil)
	var ve *engine.ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Kind != engine.KindTypeMismatch || ve.Problems[0].Node != "u" ||
		!strings.Contains(err.Error(), "space-a") || !strings.Contains(err.Error(), "space-b") {
		t.Fatalf("err = %v, want a type mismatch naming both spaces", err)
	}
}

func TestLargeTensorRoundTrip(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[
		{"id":"m","type":"MakeTensor","inputs":{"mb":16,"fill":0.5}},
		{"id":"s","type":"TensorSum","inputs":{"latent":{"node":"m","output":"LATENT"}}}]}`)
	res, _, err := r.run(t, w, "s")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Outputs["s"].Values["FLOAT"].GetFloat(); got != float64(16<<20/4)*0.5 {
		t.Fatalf("sum = %v", got)
	}
}

// countingCache is the real store, counting reads.
type countingCache struct {
	*cache.Store
	gets map[cache.Key]int
}

func (c *countingCache) Get(k cache.Key) ([]byte, bool, error) {
	c.gets[k]++
	return c.Store.Get(k)
}

// Only cached results that something uses are read: changing the last node
// of a cached chain reads its input's result, not those further up.
func TestCachedResultsReadOnlyWhenUsed(t *testing.T) {
	r := newRig(t, t.TempDir())
	cc := &countingCache{Store: r.cache, gets: map[cache.Key]int{}}
	eng := engine.New(r.mgr, engine.WithCache(cc))
	t.Cleanup(eng.Wait)
	w := parse(t, chain(5))
	run := func() *engine.Result {
		plan, err := r.catalog.Compile(w, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Run(context.Background(), plan, engine.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	run()
	w.Node("n4").Inputs["b"] = lit(10)
	clear(cc.gets)
	res := run()
	if !slices.Equal(res.Executed, []string{"n4"}) || intOut(t, res, "n4", "INT") != 14 {
		t.Fatalf("executed %v", res.Executed)
	}
	if len(cc.gets) != 1 {
		t.Fatalf("read %d cached results, want only n3's", len(cc.gets))
	}
}
