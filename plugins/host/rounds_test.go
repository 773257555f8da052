package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// The rounds below are the reliability suite's long scenarios. The normal
// suite runs each for a few seconds; `make soak` (host_soak_test.go) for
// minutes.

// chainLen is the number of Step nodes in a round's workflow.
const chainLen = 5

// roundWorkflow is a prompt of the kill rounds: a chain of Step nodes from
// seed, and a tensor of kb KiB (through shared memory) filled with fill and
// summed; each Step waits ms, so that kills land mid-node.
func roundWorkflow(t testing.TB, seed int64, ms int, kb int, fill float64) *workflow.Workflow {
	t.Helper()
	type n struct {
		ID     string         `json:"id"`
		Type   string         `json:"type"`
		Inputs map[string]any `json:"inputs"`
	}
	nodes := []n{{"s0", "Work", map[string]any{"value": seed, "ms": ms}}}
	for i := 1; i <= chainLen; i++ {
		nodes = append(nodes, n{fmt.Sprintf("s%d", i), "Step", map[string]any{"x": map[string]any{"node": fmt.Sprintf("s%d", i-1), "output": "INT"}, "ms": ms}})
	}
	nodes = append(nodes,
		n{"fill", "Fill", map[string]any{"kb": kb, "value": fill}},
		n{"sum", "Sum", map[string]any{"latent": map[string]any{"node": "fill", "output": "LATENT"}}},
	)
	b, err := json.Marshal(map[string]any{"version": 1, "nodes": nodes})
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := workflow.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// roundWant is what roundWorkflow(seed, _, kb, fill) computes.
func roundWant(seed int64, kb int, fill float64) (int64, float64) {
	x := seed
	for range chainLen {
		x = (x*3 + 1) % 1_000_000_007
	}
	return x, float64(kb<<10/4) * fill
}

// roundRig is the hostile plugin under an engine with a cache, in a
// temporary folder that holds its sockets.
type roundRig struct {
	m       *host.Manager
	cat     *engine.Catalog
	eng     *engine.Engine
	cache   *cache.Store
	mark    string // the plugin's pids, one a line
	tmp     string
	prompts int
}

func newRoundRig(t *testing.T, dl host.Deadlines) *roundRig {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	src, mark := hostile(t, "")
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(&syncBuffer{}), host.WithDeadlines(dl))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	cat, errs := engine.NewCatalog(m.Nodes(), m.Types())
	if len(errs) > 0 {
		m.Close()
		t.Fatal(errs)
	}
	c, err := cache.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	out := t.TempDir()
	eng := engine.New(m, engine.WithCache(c), engine.WithDirs(&pb.Dirs{Input: out, Output: out, Temp: out, Models: out}))
	return &roundRig{m: m, cat: cat, eng: eng, cache: c, mark: mark, tmp: tmp}
}

// run runs a round prompt and checks its outputs when it succeeds; it
// returns the run's error (a node's failure included).
func (r *roundRig) run(t *testing.T, ctx context.Context, seed int64, ms, kb int, fill float64) error {
	t.Helper()
	plan, err := r.cat.Compile(roundWorkflow(t, seed, ms, kb, fill), []string{fmt.Sprintf("s%d", chainLen), "sum"})
	if err != nil {
		t.Fatal(err)
	}
	r.prompts++
	res, err := r.eng.Run(ctx, plan, engine.RunOptions{PromptID: fmt.Sprintf("p%d-%d", seed, r.prompts)})
	if err == nil && len(res.Failed) > 0 {
		for id, e := range res.Failed {
			err = fmt.Errorf("node %s: %w", id, e)
		}
	}
	if err != nil {
		return err
	}
	wantX, wantSum := roundWant(seed, kb, fill)
	if got := res.Outputs[fmt.Sprintf("s%d", chainLen)].GetValues()["INT"].GetInt(); got != wantX {
		t.Errorf("prompt seed %d: chain gave %d, want %d (executed %v, cached %v)", seed, got, wantX, res.Executed, res.Cached)
	}
	if got := res.Outputs["sum"].GetValues()["FLOAT"].GetFloat(); got != wantSum {
		t.Errorf("prompt seed %d: sum gave %v, want %v (executed %v, cached %v)", seed, got, wantSum, res.Executed, res.Cached)
	}
	return nil
}

// pids lists the plugin processes that ever ran.
func (r *roundRig) pids(t *testing.T) []int { return pidsIn(t, r.mark) }

// closeAndCheck stops everything and checks that no process and no socket
// folder is left.
func (r *roundRig) closeAndCheck(t *testing.T) {
	t.Helper()
	r.m.Close()
	if err := r.cache.Close(); err != nil {
		t.Errorf("cache close: %v", err)
	}
	for _, pid := range r.pids(t) {
		if alive(pid) {
			t.Errorf("plugin process %d still runs after Close", pid)
		}
	}
	left, _ := os.ReadDir(r.tmp)
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "face0-plugin-") || strings.HasPrefix(e.Name(), "plugin") {
			t.Errorf("left in the temporary folder: %s", e.Name())
		}
	}
}

// kill9Rounds runs prompts from several goroutines while plugin processes are
// killed with SIGKILL at random moments, for d. Every prompt either succeeds
// with the right outputs or fails saying the plugin crashed; each failed one
// then runs again, with no killing, and must give the right outputs (the
// cache must hold nothing wrong); no process or socket is left.
func kill9Rounds(t *testing.T, d time.Duration) {
	r := newRoundRig(t, host.Deadlines{})
	defer r.closeAndCheck(t)
	var mu sync.Mutex
	type prompt struct {
		seed int64
		ms   int
		kb   int
		fill float64
	}
	var failed []prompt
	ok, kills := 0, 0
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for i := 0; time.Now().Before(stop); i++ {
				p := prompt{seed: int64(g*1_000_000 + i), ms: rng.IntN(20), kb: []int{4, 512, 2048}[rng.IntN(3)], fill: float64(rng.IntN(5) + 1)}
				err := r.run(t, context.Background(), p.seed, p.ms, p.kb, p.fill)
				mu.Lock()
				if err != nil {
					if !strings.Contains(err.Error(), "crashed") && !strings.Contains(err.Error(), "exited before its handshake") && !strings.Contains(err.Error(), "exits as soon as it starts") {
						t.Errorf("prompt seed %d failed, but not by a crash: %v", p.seed, err)
					}
					failed = append(failed, p)
				} else {
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for time.Now().Before(stop) {
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		pids := r.pids(t)
		if len(pids) == 0 {
			continue
		}
		if pid := pids[len(pids)-1]; alive(pid) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			kills++
		}
	}
	wg.Wait()
	for _, p := range failed {
		if err := r.run(t, context.Background(), p.seed, p.ms, p.kb, p.fill); err != nil {
			t.Errorf("prompt seed %d, run again without kills: %v", p.seed, err)
		}
	}
	t.Logf("%v: %d kill -9, %d prompts right, %d cut short by a kill and right when run again, %d processes", d, kills, ok, len(failed), len(r.pids(t)))
	if kills == 0 || ok == 0 {
		t.Errorf("the round proved nothing: %d kills, %d prompts right", kills, ok)
	}
}

// interruptRounds interrupts prompts whose node ignores cancellation while
// other prompts run in the same plugin, for d: the others must all succeed,
// and the stubborn nodes' processes must be stopped.
func interruptRounds(t *testing.T, d time.Duration) {
	const grace = 200 * time.Millisecond
	r := newRoundRig(t, host.Deadlines{CancelGrace: grace})
	defer r.closeAndCheck(t)
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	innocents, interrupts := 0, 0
	var mu sync.Mutex
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				seed := int64(g*1_000_000 + i)
				if err := r.run(t, context.Background(), seed, 30, 512, 2); err != nil {
					t.Errorf("innocent prompt seed %d: %v", seed, err)
				}
				mu.Lock()
				innocents++
				mu.Unlock()
			}
		}()
	}
	for time.Now().Before(stop) {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			_, err := r.m.Execute(ctx, &pb.ExecuteRequest{NodeType: "Stubborn", PromptId: "stubborn", Inputs: map[string]*pb.Value{"ms": value.Int(2000)}},
				func(ev *pb.ExecuteEvent) {
					if ev.GetProgress() != nil {
						once.Do(func() { close(started) })
					}
				})
			done <- err
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("stubborn node ended before it was interrupted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		cancel()
		<-done
		interrupts++
		time.Sleep(3 * grace)
	}
	wg.Wait()
	t.Logf("%v: %d interrupted stubborn nodes, %d innocent prompts right, %d processes", d, interrupts, innocents, len(r.pids(t)))
}

// The fast part of the rounds, in the normal suite.
func TestKill9Rounds(t *testing.T)     { kill9Rounds(t, 3*time.Second) }
func TestInterruptRounds(t *testing.T) { interruptRounds(t, 3*time.Second) }
