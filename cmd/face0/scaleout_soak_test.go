//go:build soak

package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/internal/testplugin"
)

// natsProc is a nats-server process (built from the module face0 embeds),
// so that it can be killed with SIGKILL mid-run, losing what it had not
// written to disk.
type natsProc struct {
	bin, dir, addr, token string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

func (n *natsProc) start(t *testing.T) {
	t.Helper()
	host, port, _ := net.SplitHostPort(n.addr)
	n.cmd = exec.Command(n.bin, "-js", "-sd", n.dir, "-a", host, "-p", port, "--auth", n.token)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	testenv.DieWithTest(n.cmd)
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(n.cmd, n.done)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", n.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server did not start")
		}
	}
}

func (n *natsProc) kill9() {
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// TestSoakScaleOut: rounds of prompts through three workers while, in
// turn, a worker is killed with SIGKILL mid-node (and started again) or
// the NATS server is (and started again). Every prompt completes once, with
// the right outputs, and every side effect happens once.
func TestSoakScaleOut(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(filepath.Dir(face0Bin), "nats-server")
	if _, err := testplugin.Build(filepath.Dir(face0Bin), "github.com/nats-io/nats-server/v2", "nats-server"); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	n := &natsProc{bin: bin, dir: filepath.Join(dir, "js"), addr: addr, token: "soak-token"}
	n.start(t)
	t.Cleanup(n.kill9)

	c := &testCluster{t: t, dir: dir, token: n.token, addr: addr, workers: map[string]*workerProc{}}
	c.home = t.TempDir()
	os.MkdirAll(filepath.Join(c.home, "plugins"), 0o755)
	withTestpack(t, c.home)
	c.server = startServer(t, c.home, "--nats", "nats://"+addr, "--nats-token", n.token, "--prompts", "4")
	names := []string{"w1", "w2", "w3"}
	for _, name := range names {
		c.startWorker(name, "nats://"+addr, "m1")
	}
	c.waitJoined(names...)

	const rounds, perRound = 10, 3
	want := map[string]string{} // prompt id -> the text its WriteString must write
	start := c.historyLen()
	for round := range rounds {
		var ids []string
		for i := range perRound {
			k := round*perRound + i
			wf := fmt.Sprintf(`{"version":1,"nodes":[
				{"id":"m","type":"ModelText","inputs":{"model":"m1","ms":%d}},
				{"id":"mk","type":"MakeTensor","inputs":{"mb":2,"fill":%d}},
				{"id":"len","type":"TensorLen","inputs":{"latent":{"node":"mk","output":"LATENT"}}},
				{"id":"n","type":"Add","inputs":{"a":{"node":"len","output":"INT"},"b":%d}},
				{"id":"cat","type":"Concat","inputs":{"a":{"node":"m","output":"STRING"},"b":"#%d"}},
				{"id":"save","type":"WriteString","inputs":{"text":{"node":"cat","output":"STRING"},"prefix":"soak/%d"}},
				{"id":"save_n","type":"WriteText","inputs":{"value":{"node":"n","output":"INT"},"prefix":"soak/n%d"}}]}`,
				1500+k, k, k, k, k, k)
			id := c.submit(wf)
			ids = append(ids, id)
			want[id] = fmt.Sprintf("weights of m1#%d|%d", k, 2<<20+k)
		}
		// Wait until a node is out on a worker, then strike.
		seen := strings.Count(c.workerLogs(), "ModelText m,")
		c.waitLog(func() bool { return strings.Count(c.workerLogs(), "ModelText m,") > seen }, "a worker to take a node")
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		if round%2 == 0 {
			name := names[rand.IntN(len(names))]
			w := c.workers[name]
			t.Logf("round %d: kill -9 worker %s", round, name)
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.done
			c.startWorker(name, "nats://"+addr, "m1")
		} else {
			t.Logf("round %d: kill -9 the NATS server", round)
			n.kill9()
			time.Sleep(300 * time.Millisecond)
			n.start(t)
		}
		for _, id := range ids {
			entry := c.history(id)
			got := c.outputFiles(entry, "save")
			gotN := c.outputFiles(entry, "save_n")
			if len(got) != 1 || len(gotN) != 1 || got[0]+"|"+gotN[0] != want[id] {
				t.Errorf("prompt %s wrote %v %v, want %s", id, got, gotN, want[id])
			}
		}
	}
	if n := c.historyLen() - start; n != rounds*perRound {
		t.Errorf("%d history entries for %d prompts", n, rounds*perRound)
	}
	if files := outputNames(t, c.home); len(files) != 2*rounds*perRound {
		t.Errorf("%d output files, want %d (each side effect once)", len(files), 2*rounds*perRound)
	}
	dupes := strings.Count(c.workerLogs(), "delivery 2") + strings.Count(c.workerLogs(), "delivery 3")
	t.Logf("redeliveries seen by workers: %d", dupes)
}
