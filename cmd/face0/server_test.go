package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/internal/testplugin"
)

var (
	testpackOnce sync.Once
	testpackBin  string
	testpackErr  error
)

// withTestpack installs the engine's test pack (Sleep and friends) into the
// home's plugins folder.
func withTestpack(t *testing.T, home string) {
	t.Helper()
	testpackOnce.Do(func() { testpackBin, testpackErr = testplugin.TestPack(filepath.Dir(face0Bin)) })
	if testpackErr != nil {
		t.Fatal(testpackErr)
	}
	data, err := os.ReadFile(testpackBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "plugins", "testpack"), data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// sleepWorkflow runs one Sleep node for ms milliseconds.
func sleepWorkflow(t *testing.T, ms int) string {
	p := filepath.Join(t.TempDir(), "sleep.json")
	wf := fmt.Sprintf(`{"version": 1, "nodes": [{"id": "nap", "type": "Sleep", "inputs": {"ms": %d, "steps": 100}}]}`, ms)
	if err := os.WriteFile(p, []byte(wf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testServer is `face0 serve` on a home, in a process group of its own as
// a terminal or service manager starts it.
type testServer struct {
	cmd     *exec.Cmd
	stderr  *testenv.Buffer
	rec     serverRecord
	done    chan struct{} // closed when the process has exited
	exitErr error
}

func startServer(t *testing.T, home string, args ...string) *testServer {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(face0Bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--home", home}, args...)...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &testServer{cmd: cmd, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	// The record appears once the server listens (a hang guard, not a timing
	// assertion).
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if rec, err := readServerRecord(home); err == nil && rec.PID == cmd.Process.Pid {
			s.rec = rec
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("face0 serve exited: %v\n%s", s.exitErr, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("face0 serve wrote no %s\n%s", ServerFile, s.stderr.String())
		}
	}
}

// stop sends SIGTERM to the server's process group (what systemd, timeout
// or closing a terminal do) and returns its exit error.
func (s *testServer) stop(t *testing.T) error {
	t.Helper()
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.done
	return s.exitErr
}

func (s *testServer) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(s.rec.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestRunBesideServer: face0 run on a home whose server is running (and
// holds the cache) runs the workflow on that server, with its inputs
// uploaded, its events streamed and its outputs fetched into --out; --local
// explains the locked cache; the server stops quietly on SIGTERM and leaves
// no record, after which face0 run works alone again.
func TestRunBesideServer(t *testing.T) {
	c := newCLI(t)
	srv := startServer(t, c.home)

	stdout, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("face0 run beside the server: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "running on the server at "+srv.rec.URL) {
		t.Errorf("face0 run did not say it ran on the server:\n%s", stderr)
	}
	if n := len(eventsOf(t, stdout, "executing")); n != 6 {
		t.Errorf("%d executing events streamed from the server, want 6\n%s", n, stdout)
	}
	if n := len(eventsOf(t, stdout, "execution_success")); n != 1 {
		t.Errorf("%d success events, want 1", n)
	}
	fetched, _ := filepath.Glob(filepath.Join(c.out, "imagefx", "*.png"))
	onServer, _ := filepath.Glob(filepath.Join(c.home, "output", "imagefx", "*.png"))
	if len(fetched) != 2 || len(onServer) != 2 {
		t.Errorf("outputs: %v in --out, %v in the server's output folder; want 2 each", fetched, onServer)
	}
	for _, f := range fetched {
		if !strings.Contains(stdout, f) {
			t.Errorf("face0 run did not print %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(c.home, "input", "smiley.png")); err != nil {
		t.Errorf("the input was not uploaded into the server's input folder: %v", err)
	}
	if h := srv.get(t, "/history"); !strings.Contains(h, `"status_str":"success"`) {
		t.Errorf("the server's history has no successful run: %s", h)
	}

	// Refused by validation on the server: the same message as locally.
	if _, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--set", "blur.radius=1000"); code == 0 || !strings.Contains(stderr, "must be at most 64") {
		t.Errorf("an invalid workflow on the server: exit %d\n%s", code, stderr)
	}
	// --local: the cache is the server's; the message says what to do.
	_, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--local")
	if code == 0 || !strings.Contains(stderr, "is locked") || !strings.Contains(stderr, "--no-cache") || !strings.Contains(stderr, "--cache DIR") || !strings.Contains(stderr, srv.rec.URL) {
		t.Errorf("--local beside the server: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--local", "--no-cache"); code != 0 || strings.Contains(stderr, "running on the server") {
		t.Errorf("--local --no-cache: exit %d\n%s", code, stderr)
	}

	// SIGTERM to the server's group: a clean exit, no error line per plugin.
	if err := srv.stop(t); err != nil {
		t.Errorf("face0 serve after SIGTERM: %v\n%s", err, srv.stderr.String())
	}
	if strings.Contains(srv.stderr.String(), "plugin process exited") || strings.Contains(srv.stderr.String(), "[ERROR]") {
		t.Errorf("face0 serve printed plugin errors when stopped:\n%s", srv.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(c.home, ServerFile)); !os.IsNotExist(err) {
		t.Errorf("the server left %s behind: %v", ServerFile, err)
	}
	// Alone again, with a stale record of a dead server: runs here.
	stale, _ := json.Marshal(serverRecord{PID: srv.cmd.Process.Pid, URL: srv.rec.URL})
	os.WriteFile(filepath.Join(c.home, ServerFile), stale, 0o644)
	if _, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json"); code != 0 || strings.Contains(stderr, "running on the server") {
		t.Errorf("face0 run with a stale server record: exit %d\n%s", code, stderr)
	}
}

// A server with a token: face0 run says how to give it, and works with it.
func TestRunBesideServerWithToken(t *testing.T) {
	c := newCLI(t)
	startServer(t, c.home, "--token", "s3cret")
	_, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--token", "")
	if code == 0 || !strings.Contains(stderr, "needs its token") || !strings.Contains(stderr, "FACE0_TOKEN") {
		t.Errorf("without the token: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--token", "s3cret"); code != 0 || !strings.Contains(stderr, "running on the server") {
		t.Errorf("with the token: exit %d\n%s", code, stderr)
	}
}

// startRun starts face0 run with --json and waits for its first executing
// event, so a signal lands while the node runs.
func startRun(t *testing.T, c *cli, args ...string) (*exec.Cmd, *testenv.Buffer, chan error) {
	t.Helper()
	cmd, stderr, started, done := launchRun(t, c, args...)
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("face0 run ended before running anything: %v\n%s", err, stderr.String())
	}
	return cmd, stderr, done
}

// launchRun starts face0 run with --json; started is closed at its first
// executing event.
func launchRun(t *testing.T, c *cli, args ...string) (*exec.Cmd, *testenv.Buffer, chan struct{}, chan error) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(face0Bin, append(args, "--home", c.home, "--out", c.out, "--json")...)
	cmd.Dir = root
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"type":"executing"`) {
				once.Do(func() { close(started) })
			}
		}
		done <- cmd.Wait()
	}()
	return cmd, stderr, started, done
}

// queueLengths is the server's running and pending prompt counts.
func (s *testServer) queueLengths(t *testing.T) (running, pending int) {
	t.Helper()
	var q struct {
		Running []json.RawMessage `json:"queue_running"`
		Pending []json.RawMessage `json:"queue_pending"`
	}
	if err := json.Unmarshal([]byte(s.get(t, "/queue")), &q); err != nil {
		t.Fatal(err)
	}
	return len(q.Running), len(q.Pending)
}

// Ctrl-C on a run that waits in the server's queue takes it off the queue
// (nothing would report its end otherwise) and exits 130.
func TestInterruptQueuedRunOnServer(t *testing.T) {
	c := newCLI(t)
	withTestpack(t, c.home)
	srv := startServer(t, c.home)
	wf := sleepWorkflow(t, 120000)
	first, _, firstDone := startRun(t, c, "run", wf)
	second, stderr, _, done := launchRun(t, c, "run", wf, "--set", "nap.value=2")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, pending := srv.queueLengths(t); pending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second run never waited in the server's queue\n%s", stderr.String())
		}
	}
	second.Process.Signal(os.Interrupt)
	<-done
	if code := second.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "taken off the server's queue") {
		t.Errorf("queued run: exit %d after SIGINT, want 130 once it is off the queue\n%s", code, stderr.String())
	}
	if running, pending := srv.queueLengths(t); running != 1 || pending != 0 {
		t.Errorf("after interrupting the queued run the server runs %d and has %d pending; want 1 and 0", running, pending)
	}
	first.Process.Signal(os.Interrupt)
	<-firstDone
	if code := first.ProcessState.ExitCode(); code != 130 {
		t.Errorf("running run: exit %d after SIGINT, want 130", code)
	}
}

// Ctrl-C stops a run with exit status 130, here and on a server (which
// then runs nothing of it any more).
func TestInterruptedRunExits130(t *testing.T) {
	wf := sleepWorkflow(t, 120000)
	for _, onServer := range []bool{false, true} {
		c := newCLI(t)
		withTestpack(t, c.home)
		var srv *testServer
		if onServer {
			srv = startServer(t, c.home)
		}
		cmd, stderr, done := startRun(t, c, "run", wf)
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		<-done
		if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("server %v: exit %d after SIGINT, want 130\n%s", onServer, code, stderr.String())
		}
		if srv != nil {
			// The server records the run's end as it finishes it; wait for
			// that (a hang guard, not a timing assertion).
			var q, h string
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				q, h = srv.get(t, "/queue"), srv.get(t, "/history")
				if !strings.Contains(q, "nap") && strings.Contains(h, "execution_interrupted") {
					break
				}
			}
			if strings.Contains(q, "nap") || !strings.Contains(h, "execution_interrupted") {
				t.Errorf("the server did not stop the interrupted run: queue %s\nhistory %s", q, h)
			}
		}
	}
}
