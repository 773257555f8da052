package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/gorilla/websocket"
)

// TestScaleOut runs a face0 server and three face0 worker processes on an
// embedded NATS server: nodes go only to workers that have their model, a
// remote node's progress and previews reach the websocket, a worker killed
// mid-node loses its node to another and the prompt completes once, a NATS
// restart mid-run does not lose the prompt, a worker behind a slow link
// works, and one whose link is cut mid-node stops it and comes back.
func TestScaleOut(t *testing.T) {
	c := newTestCluster(t)
	proxy := testenv.NewLinkProxy(t, c.addr, 20*time.Millisecond)
	c.startWorker("w1", "nats://"+c.addr, "m1")
	c.startWorker("w2", "nats://"+c.addr, "m1")
	c.startWorker("slow", "nats://"+proxy.Addr, "m3")
	c.waitJoined("w1", "w2", "slow")

	t.Run("wrong-token", func(t *testing.T) {
		root, _ := filepath.Abs("../..")
		cmd := testenv.DieWithTest(exec.Command(face0Bin, "worker", "--nats", "nats://"+c.addr, "--token", "not-the-token", "--home", t.TempDir(), "--packs", "none"))
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
	// SIGTERM (a service manager's stop) on a worker mid-node: it takes no
	// more nodes, finishes the one it runs, delivers it, and exits 143.
	t.Run("sigterm", func(t *testing.T) {
		defer c.use(t)()
		polite := c.startWorker("polite", "nats://"+c.addr, "m8")
		c.waitJoined("polite")
		id := c.submit(`{"version":1,"nodes":[{"id":"last","type":"ModelText","inputs":{"model":"m8","ms":1500}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"last","output":"STRING"},"prefix":"term"}}]}`)
		c.waitLog(func() bool { return slices.Contains(polite.jobs(), "last") }, "worker polite to take the node")
		syscall.Kill(-polite.cmd.Process.Pid, syscall.SIGTERM)
		if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m8" {
			t.Errorf("save wrote %v", got)
		}
		<-polite.done
		if code := polite.cmd.ProcessState.ExitCode(); code != 143 {
			t.Errorf("the worker exited %d, want 143 (SIGTERM)\n%s", code, polite.stderr.String())
		}
		if log := polite.stderr.String(); !strings.Contains(log, "stopping; running nodes finish first") || strings.Contains(log, "goroutine") {
			t.Errorf("the worker's log on SIGTERM:\n%s", log)
		}
		if strings.Contains(c.workerLogs(), "ModelText last, delivery 2") {
			t.Errorf("the node ran again elsewhere:\n%s", c.workerLogs())
		}
	})

	// A worker whose link to NATS is cut mid-node takes no more work and
	// stops the node once its ack wait has passed, for the job is handed out
	// again (here: the server moves it to a worker that joined since); back
	// on line, the worker takes work again.
	t.Run("cut-link", func(t *testing.T) {
		defer c.use(t)()
		link := testenv.NewLinkProxy(t, c.addr, 0)
		cut := c.startWorker("cut", "nats://"+link.Addr, "m4", "m6")
		c.waitJoined("cut")
		id := c.submit(`{"version":1,"nodes":[{"id":"far","type":"ModelText","inputs":{"model":"m4","ms":6000}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"far","output":"STRING"},"prefix":"cut"}}]}`)
		c.waitLog(func() bool { return slices.Contains(cut.jobs(), "far") }, "worker cut to take the node")
		link.Cut()
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
		link.Restore()
		rejoined := regexp.MustCompile(`worker cut \(\S+\) joined`)
		c.waitLog(func() bool { return len(rejoined.FindAllString(c.server.stderr.String(), -1)) >= 2 }, "worker cut to join again")
		id = c.submit(`{"version":1,"nodes":[{"id":"again","type":"ModelText","inputs":{"model":"m6"}},
			{"id":"save","type":"WriteString","inputs":{"text":{"node":"again","output":"STRING"},"prefix":"cut"}}]}`)
		if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m6" {
			t.Errorf("after the link came back, save wrote %v", got)
		}
	})
}
