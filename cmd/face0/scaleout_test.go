package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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
	c.startNATS(c.addr)
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
		c.t.Fatalf("POST /prompt: %d %s", resp.StatusCode, raw)
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

// TestScaleOut runs a face0 server and three face0 worker processes on an
// embedded NATS server: nodes go only to workers that have their model, a
// worker killed mid-node loses its node to another and the prompt completes
// once, a NATS restart mid-run does not lose the prompt, and a worker
// behind a slow link works.
func TestScaleOut(t *testing.T) {
	c := newTestCluster(t)
	proxy := newDelayProxy(t, c.addr, 20*time.Millisecond)
	c.startWorker("w1", "nats://"+c.addr, "m1")
	c.startWorker("w2", "nats://"+c.addr, "m1")
	c.startWorker("slow", "nats://"+proxy.addr, "m3")
	c.waitJoined("w1", "w2", "slow")

	t.Run("wrong-token", func(t *testing.T) {
		root, _ := filepath.Abs("../..")
		cmd := exec.Command(face0Bin, "worker", "--nats", "nats://"+c.addr, "--token", "not-the-token", "--home", t.TempDir(), "--packs", "none")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("a worker with a wrong token: %v\n%s", err, out)
		}
		if want := "refused the credentials (authorization violation): check the token (--token, $FACE0_NATS_TOKEN)"; !strings.Contains(string(out), want) {
			t.Errorf("the worker said %q, want it to contain %q", out, want)
		}
		if strings.Contains(string(out), "goroutine") {
			t.Errorf("a stack trace: %s", out)
		}
	})

	t.Run("routing", func(t *testing.T) {
		defer c.use(t)()
		var nodes []string
		for i := range 4 {
			nodes = append(nodes, fmt.Sprintf(`{"id":"m1_%d","type":"ModelText","inputs":{"model":"m1","ms":%d}}`, i, 100+i),
				fmt.Sprintf(`{"id":"save_%d","type":"WriteString","inputs":{"text":{"node":"m1_%d","output":"STRING"},"prefix":"m1"}}`, i, i))
		}
		nodes = append(nodes, `{"id":"m3","type":"ModelText","inputs":{"model":"m3","ms":300}}`,
			`{"id":"both","type":"Concat","inputs":{"a":{"node":"m3","output":"STRING"},"b":{"node":"m1_0","output":"STRING"}}}`,
			`{"id":"save_both","type":"WriteString","inputs":{"text":{"node":"both","output":"STRING"},"prefix":"both"}}`,
			`{"id":"mk","type":"MakeTensor","inputs":{"mb":4}}`,
			`{"id":"len","type":"TensorLen","inputs":{"latent":{"node":"mk","output":"LATENT"}}}`,
			`{"id":"save_len","type":"WriteText","inputs":{"value":{"node":"len","output":"INT"},"prefix":"len"}}`)
		id := c.submit(`{"version":1,"nodes":[` + strings.Join(nodes, ",") + `]}`)
		entry := c.history(id)
		for i := range 4 {
			if got := c.outputFiles(entry, fmt.Sprintf("save_%d", i)); len(got) != 1 || got[0] != "weights of m1" {
				t.Errorf("save_%d wrote %v", i, got)
			}
		}
		if got := c.outputFiles(entry, "save_both"); len(got) != 1 || got[0] != "weights of m3weights of m1" {
			t.Errorf("save_both wrote %v", got)
		}
		if got := c.outputFiles(entry, "save_len"); len(got) != 1 || got[0] != fmt.Sprint(4<<20) {
			t.Errorf("the 4 MiB tensor's length, as written: %v", got)
		}
		for _, j := range c.workers["slow"].jobs() {
			if strings.HasPrefix(j, "m1_") {
				t.Errorf("worker slow, which has no model m1, was sent %s", j)
			}
		}
		var m1 []string
		for _, w := range []string{"w1", "w2"} {
			for _, j := range c.workers[w].jobs() {
				if j == "m3" {
					t.Errorf("worker %s, which has no model m3, was sent m3", w)
				}
				if strings.HasPrefix(j, "m1_") {
					m1 = append(m1, j)
				}
			}
		}
		if len(m1) != 4 {
			t.Errorf("the m1 nodes w1 and w2 took: %v, want 4", m1)
		}
		if !strings.Contains(strings.Join(c.workers["slow"].jobs(), " "), "m3") {
			t.Errorf("worker slow (the only one with m3, behind the slow link) did not take m3: %v", c.workers["slow"].jobs())
		}
	})

	// A remote node's progress, previews and log lines reach the browser's
	// websocket as a local node's do.
	t.Run("websocket", func(t *testing.T) {
		defer c.use(t)()
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.server.rec.URL, "http")+"/ws?clientId=browser", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		id := c.submitAs(`{"version":1,"nodes":[{"id":"shown","type":"Sleep","inputs":{"ms":400,"steps":4,"preview":true,"value":5}}]}`, "browser")
		var progress []float64
		var previews [][]byte
		var logs []string
		ws.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a hang guard
		for {
			kind, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("websocket: %v (progress %v, %d previews, logs %q)", err, progress, len(previews), logs)
			}
			if kind == websocket.BinaryMessage {
				previews = append(previews, b)
				continue
			}
			var m struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			}
			json.Unmarshal(b, &m)
			if m.Data["prompt_id"] != id {
				continue
			}
			switch m.Type {
			case "progress":
				if m.Data["node"] == "shown" {
					progress = append(progress, m.Data["value"].(float64))
				}
			case "face0_log":
				logs = append(logs, fmt.Sprint(m.Data["message"]))
			}
			if m.Type == "executing" && m.Data["node"] == nil {
				break
			}
		}
		if fmt.Sprint(progress) != "[1 2 3 4]" {
			t.Errorf("progress of the remote node: %v, want [1 2 3 4]", progress)
		}
		// ComfyUI's binary preview: event type 1, format 2 (PNG), the image.
		var pngs int
		for _, p := range previews {
			if len(p) > 16 && bytes.Equal(p[:4], []byte{0, 0, 0, 1}) && bytes.Contains(p[8:16], []byte("PNG")) {
				pngs++
			}
		}
		if pngs != 4 {
			t.Errorf("%d PNG previews reached the websocket (of %d binary frames), want 4", pngs, len(previews))
		}
		joined := strings.Join(logs, "\n")
		if !regexp.MustCompile(`runs on worker (w1|w2|slow)`).MatchString(joined) || !strings.Contains(joined, "slept 400 ms") {
			t.Errorf("the node's log lines on the websocket: %q; want where it ran and its own line", logs)
		}
	})

	t.Run("kill-9", func(t *testing.T) {
		defer c.use(t)()
		before, entries := len(outputNames(t, c.home)), c.historyLen()
		id := c.submit(`{"version":1,"nodes":[{"id":"nap","type":"ModelText","inputs":{"model":"m1","ms":2500}},
			{"id":"n","type":"Concat","inputs":{"a":{"node":"nap","output":"STRING"},"b":"!"}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"n","output":"STRING"},"prefix":"kill"}},
			{"id":"len","type":"Add","inputs":{"a":41,"b":1}},
			{"id":"save2","type":"WriteText","inputs":{"value":{"node":"len","output":"INT"},"prefix":"after"}}]}`)
		var victim *workerProc
		c.waitLog(func() bool {
			for _, name := range []string{"w1", "w2"} {
				for _, j := range c.workers[name].jobs() {
					if j == "nap" {
						victim = c.workers[name]
						return true
					}
				}
			}
			return false
		}, "a worker to take the node")
		time.Sleep(300 * time.Millisecond) // mid-node
		syscall.Kill(-victim.cmd.Process.Pid, syscall.SIGKILL)
		entry := c.history(id)
		other := c.workers["w1"]
		if victim == other {
			other = c.workers["w2"]
		}
		if !strings.Contains(other.stderr.String(), "ModelText nap, delivery 2") {
			t.Errorf("the node did not go to %s after %s died:\n%s", other.name, victim.name, c.workerLogs())
		}
		if got := c.outputFiles(entry, "save"); len(got) != 1 || got[0] != "weights of m1!" {
			t.Errorf("save wrote %v", got)
		}
		if got := c.outputFiles(entry, "save2"); len(got) != 1 || got[0] != "42" {
			t.Errorf("save2 wrote %v", got)
		}
		if n := len(outputNames(t, c.home)) - before; n != 2 {
			t.Errorf("%d new output files, want 2 (one per side effect)", n)
		}
		if n := c.historyLen() - entries; n != 1 {
			t.Errorf("%d new history entries, want 1", n)
		}
	})

	t.Run("nats-restart", func(t *testing.T) {
		defer c.use(t)()
		id := c.submit(`{"version":1,"nodes":[{"id":"nap2","type":"ModelText","inputs":{"model":"m1","ms":2400}},
			{"id":"save","type":"WriteText","inputs":{"value":{"node":"len","output":"INT"},"prefix":"restart"}},
			{"id":"len","type":"TensorLen","inputs":{"latent":{"node":"mk","output":"LATENT"}}},
			{"id":"mk","type":"MakeTensor","inputs":{"mb":1,"fill":3}},
			{"id":"after","type":"Concat","inputs":{"a":{"node":"nap2","output":"STRING"},"b":"?"}},
			{"id":"save2","type":"WriteString","inputs":{"text":{"node":"after","output":"STRING"},"prefix":"restart"}}]}`)
		c.waitLog(func() bool {
			return strings.Contains(c.workerLogs(), "ModelText nap2, delivery")
		}, "a worker to take the node")
		c.restartNATS()
		entry := c.history(id)
		if got := c.outputFiles(entry, "save"); len(got) != 1 || got[0] != fmt.Sprint(1<<20) {
			t.Errorf("save wrote %v", got)
		}
		if got := c.outputFiles(entry, "save2"); len(got) != 1 || got[0] != "weights of m1?" {
			t.Errorf("save2 wrote %v", got)
		}
	})
	// A worker whose link to NATS is cut mid-node takes no more work and
	// stops the node once its ack wait has passed, for the job is handed out
	// again (here: the server moves it to a worker that joined since); back
	// on line, the worker takes work again.
	t.Run("cut-link", func(t *testing.T) {
		defer c.use(t)()
		link := newDelayProxy(t, c.addr, 0)
		cut := c.startWorker("cut", "nats://"+link.addr, "m4", "m6")
		c.waitJoined("cut")
		id := c.submit(`{"version":1,"nodes":[{"id":"far","type":"ModelText","inputs":{"model":"m4","ms":6000}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"far","output":"STRING"},"prefix":"cut"}}]}`)
		c.waitLog(func() bool { return slices.Contains(cut.jobs(), "far") }, "worker cut to take the node")
		link.cut()
		spare := c.startWorker("spare", "nats://"+c.addr, "m4")
		if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m4" {
			t.Errorf("save wrote %v", got)
		}
		if !slices.Contains(spare.jobs(), "far") {
			t.Errorf("the node did not go to worker spare: %v", spare.jobs())
		}
		c.waitLog(func() bool {
			return strings.Contains(cut.stderr.String(), "node ModelText far stopped: this worker lost its connection to NATS")
		}, "worker cut to stop its node")
		if strings.Contains(cut.stderr.String(), "storing the result of job") {
			t.Errorf("worker cut finished the node it had lost:\n%s", cut.stderr.String())
		}
		link.restore()
		rejoined := regexp.MustCompile(`worker cut \(\S+\) joined`)
		c.waitLog(func() bool { return len(rejoined.FindAllString(c.server.stderr.String(), -1)) >= 2 }, "worker cut to join again")
		id = c.submit(`{"version":1,"nodes":[{"id":"again","type":"ModelText","inputs":{"model":"m6"}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"again","output":"STRING"},"prefix":"cut"}}]}`)
		if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m6" {
			t.Errorf("after the link came back, save wrote %v", got)
		}
	})
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

// linkProxy forwards TCP connections to a NATS server, delaying every chunk
// in each direction: a slow link between a worker and NATS, which the test
// can also cut (every connection closed, new ones refused) and restore.
type linkProxy struct {
	addr string
	mu   sync.Mutex
	down bool
	open map[net.Conn]bool
}

func newDelayProxy(t *testing.T, target string, d time.Duration) *linkProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{addr: ln.Addr().String(), open: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.cut(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.open[in], p.open[out] = true, true
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); delayCopy(out, in, d) }()
			go func() { defer wg.Done(); delayCopy(in, out, d) }()
		}
	}()
	return p
}

// cut closes every connection through the proxy and refuses new ones, as a
// cable pulled out would (but at once, not after TCP's timeouts).
func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.open {
		c.Close()
	}
	clear(p.open)
}

func (p *linkProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// delayCopy copies src to dst, each chunk arriving d after it was read
// (latency, not a bandwidth limit: chunks are in flight together).
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(d), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}
