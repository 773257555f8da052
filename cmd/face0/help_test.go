package main

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
)

// --help of every command (and of each models subcommand) prints its usage
// once and exits 0.
func TestHelpEverywhere(t *testing.T) {
	c := newCLI(t)
	cmds := [][]string{{"--help"}, {"help"}, {"help", "--help"}, {"help", "serve"}, {"version", "--help"}, {"models", "--help"}}
	for _, name := range commandNames() {
		cmds = append(cmds, []string{name, "--help"}, []string{name, "-h"})
	}
	for _, sub := range []string{"list", "check", "make-tiny", "import", "attach-projection"} {
		cmds = append(cmds, []string{"models", sub, "--help"})
	}
	for _, args := range cmds {
		stdout, stderr, code := c.raw(t, args...)
		out := stdout + stderr
		if n := strings.Count(strings.ToLower(out), "usage"); code != 0 || n != 1 {
			t.Errorf("face0 %s: exit %d, %d usage texts; want 0 and 1:\n%s", strings.Join(args, " "), code, n, out)
		}
	}
}

// face0 serve --port N listens on N, as ComfyUI's flag does; with a bare
// host in --listen (ComfyUI's --listen 0.0.0.0) the port comes from --port.
func TestServePort(t *testing.T) {
	c := newCLI(t)
	for _, extra := range [][]string{{}, {"--listen", "127.0.0.1"}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(face0Bin, append([]string{"serve", "--home", c.home, "--port", fmt.Sprint(port)}, extra...)...)
		testenv.DieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		ok := false
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(100 * time.Millisecond) {
			select {
			case <-exited:
				t.Fatalf("face0 serve --port %d %v exited", port, extra)
			default:
			}
			if res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/system_stats", port)); err == nil {
				res.Body.Close()
				ok = res.StatusCode == 200
			}
		}
		_ = cmd.Process.Kill()
		<-exited
		if !ok {
			t.Errorf("face0 serve --port %d %v did not answer on that port", port, extra)
		}
	}
}
