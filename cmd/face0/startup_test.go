package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/internal/testplugin"
)

// hostileBin is the plugin that misbehaves on purpose, built once.
var hostileBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "face0-cli-hostile-")
	if err != nil {
		return "", err
	}
	return testplugin.Hostile(dir)
})

// serveWithHostile starts `face0 serve` with the hostile plugin in its
// plugins folder, misbehaving as mood says, plus env. exited is closed when
// the process has ended, with its error in *waited.
func serveWithHostile(t *testing.T, mood string, env ...string) (cmd *exec.Cmd, stderr *testenv.Buffer, pids func() []int, exited <-chan struct{}, waited *error) {
	return startWithHostile(t, []string{"serve", "--listen", "127.0.0.1:0"}, mood, env...)
}

// startWithHostile starts face0 with args likewise.
func startWithHostile(t *testing.T, args []string, mood string, env ...string) (cmd *exec.Cmd, stderr *testenv.Buffer, pids func() []int, exited <-chan struct{}, waited *error) {
	t.Helper()
	bin, err := hostileBin()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "plugins"), 0o755)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, "plugins", "hostile"), data, 0o755)
	mark := filepath.Join(t.TempDir(), "pids")
	root, _ := filepath.Abs("../..")
	cmd = exec.Command(face0Bin, append(args, "--home", home)...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "HOSTILE="+mood, "HOSTILE_MARK="+mark), env...)
	stderr = &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	pids = func() []int {
		b, _ := os.ReadFile(mark)
		var out []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	return cmd, stderr, pids, done, &waitErr
}

// eventually polls cond; the bound only keeps a broken build from hanging
// the suite.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting (60 s) for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 12, item 4: `face0 serve` (and `run` and `nodes`) answer SIGINT and
// SIGTERM while a plugin hangs as it starts or as it lists its nodes, and
// leave no plugin behind.
func TestCommandsHonourSignalsDuringStart(t *testing.T) {
	serve := []string{"serve", "--listen", "127.0.0.1:0"}
	run := []string{"run", "examples/workflows/imagefx.json", "--input", "examples/inputs", "--out", "OUT"}
	for _, tc := range []struct {
		args          []string
		mood, waitFor string
		sig           syscall.Signal
	}{
		{serve, "start-hang", "hostile: hanging before the handshake", syscall.SIGINT},
		{serve, "start-hang", "hostile: hanging before the handshake", syscall.SIGTERM},
		{serve, "describe-hang", "hostile: describe call 1", syscall.SIGINT},
		{serve, "describe-hang", "hostile: describe call 1", syscall.SIGTERM},
		{run, "start-hang", "hostile: hanging before the handshake", syscall.SIGINT},
		{[]string{"nodes"}, "describe-hang", "hostile: describe call 1", syscall.SIGTERM},
	} {
		t.Run(tc.args[0]+"/"+tc.mood+"/"+tc.sig.String(), func(t *testing.T) {
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "OUT" {
					args[i] = t.TempDir()
				}
			}
			// Deadlines far beyond the test's patience: only the signal
			// can end the start.
			cmd, stderr, pids, exited, _ := startWithHostile(t, args, tc.mood, "FACE0_PLUGIN_START_TIMEOUT=1h", "FACE0_PLUGIN_DESCRIBE_TIMEOUT=1h")
			eventually(t, "the hostile plugin to hang", func() bool { return strings.Contains(stderr.String(), tc.waitFor) })
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("face0 %s ignored %v during its start for 60 s:\n%s", tc.args[0], tc.sig, stderr.String())
			}
			if !strings.Contains(stderr.String(), "interrupted while starting the plugins") {
				t.Errorf("stderr does not say what happened:\n%s", stderr.String())
			}
			for _, pid := range pids() {
				eventually(t, "the hostile plugin to be gone", func() bool { return syscall.Kill(pid, 0) != nil })
			}
		})
	}
}

// Issue 12, item 4: a plugin that does not list its nodes in time is left
// out with a warning that names it, and the server starts without it.
func TestServeLeavesOutHungPlugin(t *testing.T) {
	cmd, stderr, _, exited, err := serveWithHostile(t, "describe-hang", "FACE0_PLUGIN_DESCRIBE_TIMEOUT=1s")
	eventually(t, "the server to start", func() bool { return strings.Contains(stderr.String(), "face0: serving on http://") })
	if !strings.Contains(stderr.String(), "face0: warning: plugin hostile (") || !strings.Contains(stderr.String(), "did not list its nodes within 1s") {
		t.Errorf("no warning naming the hung plugin:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if *err != nil {
			t.Errorf("face0 serve after SIGTERM: %v\n%s", *err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("face0 serve ignored SIGTERM")
	}
}
