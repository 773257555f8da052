package server

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
)

// proc is a real `face0 serve` process, for what only a real process shows: a
// crash, a kill -9, a Go trace on stderr, an exit status.
type proc struct {
	cmd    *exec.Cmd
	url    string // "" when it exited before serving
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan struct{}
	err    error // Wait's error, once exited is closed
}

var servingRE = regexp.MustCompile(`serving on (http://\S+)`)

// plugHome makes HOME/plugins hold the slowpack test plugin, so that a face0
// process over home has the Slow node.
func plugHome(t testing.TB, home string) {
	t.Helper()
	dir := filepath.Join(home, "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bins.slowpack, filepath.Join(dir, "slowpack")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
}

// startProc runs `face0 serve` over home on a free loopback port and waits
// until it serves or exits. It runs in its own process group, so that kill9
// takes its plugin processes along, as a crash of the machine would.
func startProc(t testing.TB, home string, args ...string) *proc {
	t.Helper()
	args = append([]string{"serve", "--home", home, "--listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bins.face0, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "FACE0_TOKEN=")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	served := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				served <- m[1]
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill9() })
	select {
	case p.url = <-served:
	case <-p.exited:
	case <-time.After(2 * time.Minute): // a hang guard, not a speed check
		p.kill9()
		t.Fatalf("face0 serve neither served nor exited; stderr:\n%s", p.log())
	}
	return p
}

// log is what the process wrote to stderr so far.
func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// kill9 kills the process and its plugins at once, with no chance to clean up.
func (p *proc) kill9() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// stop asks the server to shut down as Ctrl-C does and waits for it.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		p.kill9()
		t.Fatalf("face0 serve did not stop on SIGINT; stderr:\n%s", p.log())
	}
	// Plugins left behind by a server stopped mid-way are not this test's subject.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// wait waits for the process to exit by itself.
func (p *proc) wait(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		p.kill9()
		t.Fatalf("face0 serve did not exit; stderr:\n%s", p.log())
	}
}

// traceMarkers are what a Go crash prints; none may ever reach a user.
var traceMarkers = []string{"goroutine ", "panic:", "fatal error:", "SIGBUS", "SIGSEGV", "unexpected fault address", ".go:"}

func assertNoTrace(t testing.TB, what, stderr string) {
	t.Helper()
	for _, m := range traceMarkers {
		if strings.Contains(stderr, m) {
			t.Fatalf("%s: stderr shows a Go trace (%q):\n%s", what, m, stderr)
		}
	}
}
