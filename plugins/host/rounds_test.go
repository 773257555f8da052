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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testenv"
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
	prompts atomic.Int64
}

func newRoundRig(t *testing.T, dl host.Deadlines) *roundRig {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	src, mark := hostile(t, "")
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(&testenv.Buffer{}), host.WithDeadlines(dl))
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
	res, err := r.eng.Run(ctx, plan, engine.RunOptions{PromptID: fmt.Sprintf("p%d-%d", seed, r.prompts.Add(1))})
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
// killed with SIGKILL at random moments, for at least d and kills kills (a
// kill waits for a prompt to succeed since the last one, so that a slow
// machine slows the rounds rather than starving them). Every prompt either
// succeeds with the right outputs or fails saying the plugin crashed; each
// failed one then runs again, with no killing, and must give the right
// outputs (the cache must hold nothing wrong); no process or socket is left.
func kill9Rounds(t *testing.T, d time.Duration, kills int) {
	r := newRoundRig(t, host.Deadlines{})
	defer r.closeAndCheck(t)
	type prompt struct {
		seed int64
		ms   int
		kb   int
		fill float64
	}
	var (
		mu     sync.Mutex
		failed []prompt
		ok     atomic.Int64
		done   atomic.Bool
		wg     sync.WaitGroup
	)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for i := 0; !done.Load(); i++ {
				p := prompt{seed: int64(g*1_000_000 + i), ms: rng.IntN(20), kb: []int{4, 512, 2048}[rng.IntN(3)], fill: float64(rng.IntN(5) + 1)}
				err := r.run(t, context.Background(), p.seed, p.ms, p.kb, p.fill)
				if err == nil {
					ok.Add(1)
					continue
				}
				if !strings.Contains(err.Error(), "crashed") && !strings.Contains(err.Error(), "exited before its handshake") && !strings.Contains(err.Error(), "exits as soon as it starts") {
					t.Errorf("prompt seed %d failed, but not by a crash: %v", p.seed, err)
				}
				mu.Lock()
				failed = append(failed, p)
				mu.Unlock()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	began := time.Now()
	killed := 0
	for time.Since(began) < d || killed < kills {
		// The bound only keeps a broken build from hanging the suite.
		if time.Since(began) > d+3*time.Minute {
			t.Errorf("no progress: %d kills and %d prompts right in %v", killed, ok.Load(), time.Since(began))
			break
		}
		before := ok.Load()
		for ok.Load() == before && time.Since(began) < d+3*time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		pids := r.pids(t)
		if len(pids) == 0 {
			continue
		}
		if pid := pids[len(pids)-1]; alive(pid) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	done.Store(true)
	wg.Wait()
	for _, p := range failed {
		if err := r.run(t, context.Background(), p.seed, p.ms, p.kb, p.fill); err != nil {
			t.Errorf("prompt seed %d, run again without kills: %v", p.seed, err)
		}
	}
	t.Logf("%v: %d kill -9, %d prompts right, %d cut short by a kill and right when run again, %d processes",
		time.Since(began).Round(time.Second), killed, ok.Load(), len(failed), len(r.pids(t)))
}

// interruptRounds interrupts nodes that ignore cancellation while other
// prompts run in the same plugin, for at least d and rounds interrupts: the
// other prompts must all succeed, and the stubborn nodes' processes must be
// stopped.
func interruptRounds(t *testing.T, d time.Duration, rounds int) {
	const grace = 200 * time.Millisecond
	r := newRoundRig(t, host.Deadlines{CancelGrace: grace})
	defer r.closeAndCheck(t)
	var (
		innocents atomic.Int64
		done      atomic.Bool
		wg        sync.WaitGroup
	)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !done.Load(); i++ {
				seed := int64(g*1_000_000 + i)
				if err := r.run(t, context.Background(), seed, 30, 512, 2); err != nil {
					t.Errorf("innocent prompt seed %d: %v", seed, err)
				}
				innocents.Add(1)
			}
		}()
	}
	began := time.Now()
	interrupts := 0
	var stubborn []int
	for time.Since(began) < d || interrupts < rounds {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		var once sync.Once
		var pid int
		ended := make(chan error, 1)
		go func() {
			_, err := r.m.Execute(ctx, &pb.ExecuteRequest{NodeType: "Stubborn", PromptId: "stubborn", Inputs: map[string]*pb.Value{"ms": value.Int(2000)}},
				func(ev *pb.ExecuteEvent) {
					// The node logs its process, then reports progress.
					fmt.Sscanf(ev.GetLog().GetMessage(), "stubborn node running in process %d", &pid)
					if ev.GetProgress() != nil {
						once.Do(func() { close(started) })
					}
				})
			ended <- err
		}()
		select {
		case <-started:
		case err := <-ended:
			t.Fatalf("stubborn node ended before it was interrupted: %v", err)
		}
		stubborn = append(stubborn, pid)
		time.Sleep(50 * time.Millisecond)
		cancel()
		<-ended
		interrupts++
		time.Sleep(3 * grace)
	}
	done.Store(true)
	wg.Wait()
	// Each stubborn node's process goes once the innocents there finish.
	for _, pid := range stubborn {
		waitFor(t, fmt.Sprintf("the stubborn node's process %d to be stopped", pid), func() bool { return !alive(pid) })
	}
	t.Logf("%v: %d interrupted stubborn nodes, %d innocent prompts right, %d processes",
		time.Since(began).Round(time.Second), interrupts, innocents.Load(), len(r.pids(t)))
}

// The fast part of the rounds, in the normal suite.
func TestKill9Rounds(t *testing.T)     { kill9Rounds(t, 0, 4) }
func TestInterruptRounds(t *testing.T) { interruptRounds(t, 0, 3) }
