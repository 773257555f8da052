package host_test

// The reliability tests of plugin supervision (issue 12, items 4, 5, 10 and
// 11) run the hostile plugin, a real plugin process that hangs, panics,
// ignores cancellation and floods its output on purpose.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// waitFor polls cond until it holds. The bound only keeps a broken build
// from hanging the suite; it is far beyond what any step needs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting (60 s) for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid exists (go-plugin reaps its children).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// hostile is the hostile plugin's source, misbehaving as mood says (see
// internal/testplugin/hostile), recording its pids in the returned file.
func hostile(t *testing.T, mood string) (host.Source, string) {
	mark := filepath.Join(t.TempDir(), "pids")
	return host.Source{Name: "hostile", Path: filepath.Join(binDir, "hostile"), Env: []string{"HOSTILE=" + mood, "HOSTILE_MARK=" + mark}}, mark
}

// pidsIn reads the pids a hostile plugin recorded.
func pidsIn(t *testing.T, mark string) []int {
	t.Helper()
	b, err := os.ReadFile(mark)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("bad pid %q in %s", f, mark)
		}
		pids = append(pids, n)
	}
	return pids
}

func testpack() host.Source {
	return host.Source{Name: "testpack", Path: filepath.Join(binDir, "testpack")}
}

func exec(m *host.Manager, ctx context.Context, node string, inputs map[string]*pb.Value) (*pb.Outputs, error) {
	return m.Execute(ctx, &pb.ExecuteRequest{NodeType: node, Inputs: inputs}, func(*pb.ExecuteEvent) {})
}

// Item 4: a plugin that never starts or never lists its nodes is left out
// with a warning that names it, within its deadline; the others work.
func TestHungPluginIsLeftOut(t *testing.T) {
	for _, tc := range []struct {
		mood string
		dl   host.Deadlines
		want string
	}{
		// The deadline holds for the good pack too, which a loaded machine
		// may take a second to start: the hostile one hangs for good, so a
		// generous deadline still tells them apart.
		{"start-hang", host.Deadlines{Start: 3 * time.Second}, "did not start within 3s (FACE0_PLUGIN_START_TIMEOUT raises the limit)"},
		{"describe-hang", host.Deadlines{Describe: 3 * time.Second}, "did not list its nodes within 3s (FACE0_PLUGIN_DESCRIBE_TIMEOUT raises the limit)"},
	} {
		t.Run(tc.mood, func(t *testing.T) {
			src, mark := hostile(t, tc.mood)
			m, problems := host.Start(context.Background(), []host.Source{src, testpack()}, host.WithLog(&testenv.Buffer{}), host.WithDeadlines(tc.dl))
			defer m.Close()
			if len(problems) != 1 || !strings.Contains(problems[0].Error(), "plugin hostile") ||
				!strings.Contains(problems[0].Error(), tc.want) || !strings.Contains(problems[0].Error(), "left out") {
				t.Fatalf("problems = %v; want one naming hostile and saying %q", problems, tc.want)
			}
			if got := m.Packs(); len(got) != 1 || got[0] != "testpack" {
				t.Fatalf("packs = %v, want testpack only", got)
			}
			if out, err := exec(m, context.Background(), "Add", map[string]*pb.Value{"a": value.Int(2), "b": value.Int(3)}); err != nil || out.Values["INT"].GetInt() != 5 {
				t.Fatalf("the good plugin: %v %v", out, err)
			}
			for _, pid := range pidsIn(t, mark) {
				if alive(pid) {
					t.Errorf("the hung plugin's process %d still runs after it was left out", pid)
				}
			}
		})
	}
}

// Item 4: an interrupt during start ends it at once, whatever the plugins
// are doing, and leaves no process behind.
func TestStartHonoursCancellation(t *testing.T) {
	for _, mood := range []string{"start-hang", "describe-hang"} {
		t.Run(mood, func(t *testing.T) {
			src, mark := hostile(t, mood)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				// Cancel once the plugin process runs (and hangs).
				for len(pidsIn(t, mark)) == 0 {
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
				cancel()
			}()
			// Deadlines far beyond the test's patience: only the
			// cancellation can end the start.
			long := host.Deadlines{Start: time.Hour, Describe: time.Hour}
			done := make(chan []error, 1)
			var m *host.Manager
			go func() {
				var problems []error
				m, problems = host.Start(ctx, []host.Source{src}, host.WithLog(&testenv.Buffer{}), host.WithDeadlines(long))
				done <- problems
			}()
			var problems []error
			select {
			case problems = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Start ignored the cancellation of its context for 60 s")
			}
			m.Close()
			if len(problems) != 1 || !strings.Contains(problems[0].Error(), context.Canceled.Error()) {
				t.Fatalf("problems = %v, want the cancellation", problems)
			}
			for _, pid := range pidsIn(t, mark) {
				if alive(pid) {
					t.Errorf("process %d still runs after an interrupted start", pid)
				}
			}
		})
	}
}

// Item 4: Fingerprint has a deadline; missing it fails the node clearly.
func TestFingerprintDeadline(t *testing.T) {
	src, _ := hostile(t, "fingerprint-hang")
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(&testenv.Buffer{}), host.WithDeadlines(host.Deadlines{Fingerprint: 300 * time.Millisecond}))
	defer m.Close()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	_, err := m.Fingerprint(context.Background(), &pb.FingerprintRequest{NodeType: "Mood"})
	if err == nil || !strings.Contains(err.Error(), "plugin hostile did not compute the fingerprint of node Mood within 300ms") {
		t.Fatalf("err = %v", err)
	}
}

// Item 4: a refresh that hangs holds up neither node executions nor the
// node list, and keeps the specs in force.
func TestHungRefreshBlocksNothing(t *testing.T) {
	log := &testenv.Buffer{}
	src, _ := hostile(t, "describe-hang-after=1")
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(log), host.WithDeadlines(host.Deadlines{Describe: time.Hour}))
	defer m.Close()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	before := len(m.Nodes())
	ctx, cancel := context.WithCancel(context.Background())
	refreshed := make(chan []error, 1)
	go func() { refreshed <- m.Refresh(ctx) }()
	waitFor(t, "the refresh to reach the plugin", func() bool { return strings.Contains(log.String(), "hostile: describe call 2") })
	for i := range 3 {
		out, err := exec(m, context.Background(), "Work", map[string]*pb.Value{"value": value.Int(int64(i))})
		if err != nil || out.Values["INT"].GetInt() != int64(i) {
			t.Fatalf("execute during a hung refresh: %v %v", out, err)
		}
		if len(m.Nodes()) != before {
			t.Fatalf("nodes during a hung refresh: %d, want %d", len(m.Nodes()), before)
		}
	}
	select {
	case <-refreshed:
		t.Fatal("the refresh returned while the plugin still hangs")
	default:
	}
	cancel()
	problems = <-refreshed
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "keeps the node specs it had") {
		t.Fatalf("problems = %v", problems)
	}
	if len(m.Nodes()) != before {
		t.Fatalf("nodes after a failed refresh: %d, want %d", len(m.Nodes()), before)
	}
}

// Item 4: a refresh that misses the Describe deadline says so.
func TestRefreshDeadline(t *testing.T) {
	src, _ := hostile(t, "describe-hang-after=1")
	// The first Describe, at start, must make it within the same deadline.
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(&testenv.Buffer{}), host.WithDeadlines(host.Deadlines{Describe: 3 * time.Second}))
	defer m.Close()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	before := len(m.Nodes())
	problems = m.Refresh(context.Background())
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "did not list its nodes within 3s") || !strings.Contains(problems[0].Error(), "keeps the node specs it had") {
		t.Fatalf("problems = %v", problems)
	}
	if len(m.Nodes()) != before {
		t.Fatalf("nodes after a failed refresh: %d, want %d", len(m.Nodes()), before)
	}
}

// Item 11: a pack that panics or dies while describing its nodes is reported
// as what happened, not as a crash "while running this node".
func TestDescribeFailureIsSaid(t *testing.T) {
	for _, tc := range []struct {
		mood string
		want []string
	}{
		{"describe-panic", []string{"plugin hostile", "panicked while describing itself", "hostile: boom while describing", "left out"}},
		{"describe-exit", []string{"plugin hostile", "crashed (its process exited) while describing its nodes", "exiting while describing my nodes", "left out"}},
	} {
		t.Run(tc.mood, func(t *testing.T) {
			src, _ := hostile(t, tc.mood)
			m, problems := host.Start(context.Background(), []host.Source{src, testpack()}, host.WithLog(&testenv.Buffer{}))
			defer m.Close()
			if len(problems) != 1 {
				t.Fatalf("problems = %v, want one", problems)
			}
			msg := problems[0].Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("problem %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, "this node") || strings.Contains(msg, "being restarted") {
				t.Errorf("problem %q speaks of a node or a restart; there is neither", msg)
			}
		})
	}
}

// Item 5: a node that ignores cancellation has its process stopped after the
// grace period, but never at the cost of another prompt's node: one that was
// running there finishes, one that starts later runs in a fresh process.
func TestStubbornNodeSparesInnocentOnes(t *testing.T) {
	const grace = 500 * time.Millisecond
	log := &testenv.Buffer{}
	src, _ := hostile(t, "")
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(log), host.WithDeadlines(host.Deadlines{CancelGrace: grace}))
	defer m.Close()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	run := func(ctx context.Context, prompt, node string, inputs map[string]*pb.Value, started chan<- struct{}) (*pb.Outputs, error) {
		var once sync.Once
		return m.Execute(ctx, &pb.ExecuteRequest{NodeType: node, PromptId: prompt, NodeId: "1", Inputs: inputs}, func(ev *pb.ExecuteEvent) {
			if ev.GetProgress() != nil && started != nil {
				once.Do(func() { close(started) })
			}
		})
	}
	type result struct {
		out *pb.Outputs
		err error
	}
	goRun := func(ctx context.Context, prompt, node string, inputs map[string]*pb.Value) (<-chan struct{}, <-chan result) {
		started, done := make(chan struct{}), make(chan result, 1)
		go func() {
			out, err := run(ctx, prompt, node, inputs, started)
			done <- result{out, err}
		}()
		return started, done
	}
	long := map[string]*pb.Value{"ms": value.Int(int64(6 * grace / time.Millisecond)), "value": value.Int(42)}

	// Prompt B's node runs first, long enough to outlast A's grace period.
	startedB, doneB := goRun(context.Background(), "B", "Work", long)
	<-startedB
	// Prompt A's stubborn node starts in the same process and is cancelled.
	ctxA, cancelA := context.WithCancel(context.Background())
	startedA, doneA := goRun(ctxA, "A", "Stubborn", nil)
	<-startedA
	cancelA()
	if r := <-doneA; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled stubborn node: %v", r.err)
	}
	// Prompt C's node starts right after the interrupt.
	_, doneC := goRun(context.Background(), "C", "Work", long)

	rb, rc := <-doneB, <-doneC
	for name, r := range map[string]result{"B (running before the interrupt)": rb, "C (started after it)": rc} {
		if r.err != nil || r.out.Values["INT"].GetInt() != 42 {
			t.Errorf("innocent node of prompt %s: %v %v", name, r.out, r.err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	old := int(rb.out.Values["pid"].GetInt())
	waitFor(t, "the stubborn node's process to be stopped", func() bool { return !alive(old) })
	// Both ends said what happened: the plugin's own stderr line reaches
	// the log, prefixed by the pack.
	for _, w := range []string{"plugin hostile: node Stubborn ignored cancellation for 500ms", "face0: plugin hostile: node Stubborn ignored cancellation for 500ms"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}
	// Prompt D, later, runs in a fresh process.
	out, err := exec(m, context.Background(), "Work", map[string]*pb.Value{"value": value.Int(7)})
	if err != nil || out.Values["INT"].GetInt() != 7 || int(out.Values["pid"].GetInt()) == old {
		t.Fatalf("after the stubborn node's process was stopped: %v %v (old process %d)", out, err, old)
	}
}

// Item 10: what a plugin writes to stderr or stdout reaches the host's log,
// line by line, prefixed by the pack, with long lines cut and floods bounded;
// every line is either forwarded or counted as dropped.
func TestPluginOutputForwardedWithinBounds(t *testing.T) {
	log := &testenv.Buffer{}
	src, _ := hostile(t, "")
	began := time.Now()
	m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(log))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	floods := []struct {
		tag, to    string
		lines, len int64
	}{
		{"hello-stdout", "stdout", 3, 20},
		{"long-line", "stderr", 1, 100_000},
		{"flood", "stderr", 20_000, 60},
	}
	for _, f := range floods {
		if _, err := exec(m, context.Background(), "Flood", map[string]*pb.Value{
			"lines": value.Int(f.lines), "size": value.Int(f.len), "to": value.String(f.to), "tag": value.String(f.tag),
		}); err != nil {
			t.Fatal(err)
		}
	}
	m.Close() // the log is complete once the processes are gone
	elapsed := time.Since(began)
	text := log.String()

	for _, want := range []string{"plugin hostile: hello-stdout 0 ", "plugin hostile: hello-stdout 2 ", "plugin hostile: long-line 0 xxx"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`plugin hostile: long-line 0 x+ … \((\d+) more bytes of this line cut\)`).FindStringSubmatch(text); m == nil {
		t.Errorf("the 100 kB line was not cut to a bounded length")
	} else if cut, _ := strconv.Atoi(m[1]); cut < 90_000 {
		t.Errorf("only %d bytes cut from a 100 kB line", cut)
	}
	forwarded := strings.Count(text, "plugin hostile: flood ")
	dropped := 0
	for _, m := range regexp.MustCompile(`plugin hostile: \((\d+) lines of its output dropped`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		dropped += n
	}
	const total = 20_000
	if forwarded+dropped < total {
		t.Errorf("%d flood lines forwarded and %d reported dropped, of %d: lines were lost silently", forwarded, dropped, total)
	}
	// The bound: a burst, then a steady rate (measured over the whole test,
	// so that a slow machine only loosens it).
	if bound := host.LineBurst + int(float64(host.LineRate)*elapsed.Seconds()) + 10; forwarded > bound {
		t.Errorf("%d flood lines forwarded in %v; the bound is %d", forwarded, elapsed, bound)
	}
	if forwarded == 0 {
		t.Error("no flood line reached the log")
	}
	t.Logf("%d of %d flood lines forwarded, %d reported dropped, in %v", forwarded, total, dropped, elapsed.Round(time.Millisecond))
}

// A crash mid-node is reported on that node with the plugin's last words,
// and the next node runs in a fresh process.
func TestCrashMidNodeIsExplained(t *testing.T) {
	for _, tc := range []struct{ how, words string }{
		{"exit", "hostile: exiting mid-node on purpose"},
		{"panic", "panic: hostile: crashing on purpose"},
		{"kill", ""},
	} {
		t.Run(tc.how, func(t *testing.T) {
			src, _ := hostile(t, "")
			m, problems := host.Start(context.Background(), []host.Source{src}, host.WithLog(&testenv.Buffer{}))
			defer m.Close()
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			_, err := exec(m, context.Background(), "Crash", map[string]*pb.Value{"how": value.String(tc.how)})
			if err == nil || !strings.Contains(err.Error(), "plugin hostile crashed (its process exited) while running this node") ||
				!strings.Contains(err.Error(), "it is being restarted") || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v; want a crash report quoting %q", err, tc.words)
			}
			out, err := exec(m, context.Background(), "Work", map[string]*pb.Value{"value": value.Int(5)})
			if err != nil || out.Values["INT"].GetInt() != 5 {
				t.Fatalf("after the crash: %v %v", out, err)
			}
		})
	}
}
