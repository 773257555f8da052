package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/cluster/natsd"
	"github.com/face0/face0/internal/testenv"
)

// cluster is a NATS server in this process (so that a test can restart
// it), a face0 serve process using it, and face0 worker processes.
type testCluster struct {
	t       *testing.T
	dir     string
	token   string
	creds   []string // a worker's credential flags (default: --token token)
	nats    *natsd.Server
	addr    string // the NATS server's host:port
	server  *testServer
	home    string
	workers map[string]*workerProc
}

type workerProc struct {
	name   string
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan struct{}
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir(), token: "cluster-test-token", workers: map[string]*workerProc{}}
	c.startNATS("127.0.0.1:0")
	t.Cleanup(func() { c.nats.Shutdown() })
	c.home = t.TempDir()
	os.MkdirAll(filepath.Join(c.home, "plugins"), 0o755)
	withTestpack(t, c.home)
	c.server = startServer(t, c.home, "--nats", "nats://"+c.addr, "--nats-token", c.token, "--prompts", "4")
	return c
}

func (c *testCluster) startNATS(listen string) {
	c.t.Helper()
	srv, err := natsd.Start(natsd.Config{Listen: listen, Dir: filepath.Join(c.dir, "nats"), Token: c.token})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nats = srv
	c.addr = strings.TrimPrefix(srv.URL(), "nats://")
}

// restartNATS stops the NATS server and starts it again on the same
// address and storage, as a restart of the service would.
func (c *testCluster) restartNATS() {
	c.t.Helper()
	c.nats.Shutdown()
	time.Sleep(200 * time.Millisecond)
	// The port may take a moment to be free again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		srv, err := natsd.Start(natsd.Config{Listen: c.addr, Dir: filepath.Join(c.dir, "nats"), Token: c.token})
		if err == nil {
			c.nats = srv
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restarting NATS on %s: %v", c.addr, err)
		}
	}
}

// startWorker starts face0 worker with a home holding the test pack and the
// named models (folders with a model.txt), connecting to url (the NATS
// server, or a proxy in front of it).
func (c *testCluster) startWorker(name, url string, models ...string) *workerProc {
	c.t.Helper()
	home := c.t.TempDir()
	os.MkdirAll(filepath.Join(home, "plugins"), 0o755)
	withTestpack(c.t, home)
	for _, m := range models {
		os.MkdirAll(filepath.Join(home, "models", m), 0o755)
		os.WriteFile(filepath.Join(home, "models", m, "model.txt"), []byte("weights of "+m), 0o644)
	}
	root, _ := filepath.Abs("../..")
	creds := c.creds
	if creds == nil {
		creds = []string{"--token", c.token}
	}
	args := append([]string{"worker", "--nats", url, "--home", home, "--packs", "none",
		"--name", name, "--ack-wait", "2s", "--gpu", "none", "-v"}, creds...)
	cmd := exec.Command(face0Bin, args...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &workerProc{name: name, cmd: cmd, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = w.stderr
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { cmd.Wait(); close(w.done) }()
	c.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	})
	c.workers[name] = w
	return w
}

// waitJoined waits until the server's log says each worker joined.
func (c *testCluster) waitJoined(names ...string) {
	c.t.Helper()
	c.waitLog(func() bool {
		for _, n := range names {
			if !strings.Contains(c.server.stderr.String(), "worker "+n+" (") {
				return false
			}
		}
		return true
	}, "the workers to join")
}

func (c *testCluster) waitLog(cond func() bool, what string) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a hang guard, not a timing assertion
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s\nserver:\n%s\n%s", what, c.server.stderr.String(), c.workerLogs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) workerLogs() string {
	var b strings.Builder
	for name, w := range c.workers {
		fmt.Fprintf(&b, "worker %s:\n%s\n", name, w.stderr.String())
	}
	return b.String()
}

// jobs lists the node ids the worker took (its -v log).
func (w *workerProc) jobs() []string {
	var out []string
	for _, m := range jobLine.FindAllStringSubmatch(w.stderr.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

var jobLine = regexp.MustCompile(`: node \S+ (\S+), delivery \d+`)

// submit posts a native workflow and returns the prompt id.
func (c *testCluster) submit(wf string) string {
	c.t.Helper()
	return c.submitAs(wf, "")
}

// submitAs submits for a websocket client.
func (c *testCluster) submitAs(wf, client string) string {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"prompt": json.RawMessage(wf), "client_id": client})
	resp, err := http.Post(c.server.rec.URL+"/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &out)
	id, _ := out["prompt_id"].(string)
	if resp.StatusCode != 200 || id == "" {
		c.t.Fatalf("POST /prompt: %d %s\nserver:\n%s", resp.StatusCode, raw, c.server.stderr.String())
	}
	return id
}

// history waits for the prompt's history entry.
func (c *testCluster) history(id string) map[string]any {
	c.t.Helper()
	var entry map[string]any
	c.waitLog(func() bool {
		var all map[string]any
		if json.Unmarshal([]byte(c.server.get(c.t, "/history/"+id)), &all) != nil {
			return false
		}
		entry, _ = all[id].(map[string]any)
		return entry != nil
	}, "prompt "+id+" to finish")
	if st, _ := entry["status"].(map[string]any); st["status_str"] != "success" {
		c.t.Fatalf("prompt %s: %v\n%s", id, entry["status"], c.workerLogs())
	}
	return entry
}

// outputText is a node's text output as the history lists it (WriteText's
// files, read from the server's output folder).
func (c *testCluster) outputFiles(entry map[string]any, node string) []string {
	c.t.Helper()
	outs, _ := entry["outputs"].(map[string]any)
	n, _ := outs[node].(map[string]any)
	files, _ := n["files"].([]any)
	var out []string
	for _, f := range files {
		rec, _ := f.(map[string]any)
		b, err := os.ReadFile(filepath.Join(c.home, "output", fmt.Sprint(rec["subfolder"]), fmt.Sprint(rec["filename"])))
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out
}

// use makes the cluster's helpers report to t until the returned func.
func (c *testCluster) use(t *testing.T) func() {
	prev := c.t
	c.t = t
	return func() { c.t = prev }
}

func outputNames(t *testing.T, home string) []string {
	var out []string
	filepath.WalkDir(filepath.Join(home, "output"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func (c *testCluster) historyLen() int {
	var all map[string]any
	if err := json.Unmarshal([]byte(c.server.get(c.t, "/history")), &all); err != nil {
		c.t.Fatal(err)
	}
	return len(all)
}

// startEmbedded starts face0 serve with --nats embedded on a free port, and
// the given flags, and returns the cluster (its workers connect with creds)
// and the URL the server gives workers.
func startEmbedded(t *testing.T, dir string, creds []string, flags ...string) (*testCluster, string) {
	t.Helper()
	c := &testCluster{t: t, dir: dir, workers: map[string]*workerProc{}, creds: creds}
	c.home = t.TempDir()
	os.MkdirAll(filepath.Join(c.home, "plugins"), 0o755)
	withTestpack(t, c.home)
	c.server = startServer(t, c.home, append([]string{"--nats", "embedded", "--nats-listen", "127.0.0.1:0"}, flags...)...)
	m := regexp.MustCompile(`accepting workers through NATS at (\S+)`).FindStringSubmatch(c.server.stderr.String())
	if m == nil {
		t.Fatalf("face0 serve did not say where workers connect:\n%s", c.server.stderr.String())
	}
	return c, m[1]
}
