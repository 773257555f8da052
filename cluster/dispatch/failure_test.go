package dispatch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/cluster/natsd"
	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/plugins/value"
)

// startRun starts a one-node run and returns once the node reports
// progress; first names the worker it went to first. The run's end comes
// on done.
func (r *rig) startRun(src, node string) (sink *startSink, done chan runEnd, first func() string) {
	sink = &startSink{started: make(chan struct{})}
	done = make(chan runEnd, 1)
	go func() {
		res, err := r.runSink(context.Background(), src, sink, node)
		done <- runEnd{res, err}
	}()
	select {
	case <-sink.started:
	case <-time.After(30 * time.Second):
		r.t.Fatal("the node never started")
	}
	first = func() string {
		for _, e := range sink.Recorder.Of(events.Log) {
			if name, ok := strings.CutPrefix(e.Message, "runs on worker "); ok {
				name, _, _ = strings.Cut(name, " ")
				return name
			}
		}
		return ""
	}
	return sink, done, first
}

type runEnd struct {
	res *engine.Result
	err error
}

// A worker that dies mid-node (its connection gone, nothing acked) loses
// the job to another worker of its group after the ack wait; the run
// completes once, with the right result.
func TestWorkerDiesMidNode(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addWorker("w1", 1)
	r.addWorker("w2", 1)
	sink, errc, first := r.startRun(`{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":1500,"steps":10,"value":42}}]}`, "s")
	victim := first()
	r.mu.Lock()
	tw := r.workers[victim]
	r.mu.Unlock()
	if tw == nil {
		t.Fatalf("the node runs on %q, no worker of the rig", victim)
	}
	tw.die()
	end := <-errc
	if end.err != nil {
		t.Fatal(end.err)
	}
	if got, _ := value.AsInt(output(t, end.res, "s", "INT")); got != 42 {
		t.Errorf("the node gave %d, want 42", got)
	}
	var ons []string
	for _, e := range sink.Recorder.Of(events.Log) {
		if strings.HasPrefix(e.Message, "runs on worker ") {
			ons = append(ons, e.Message)
		}
	}
	if len(ons) != 2 || strings.Contains(ons[1], victim) || !strings.Contains(ons[1], "delivery 2") {
		t.Errorf("the node's workers: %q; want the victim %s, then the other in a second delivery", ons, victim)
	}
	if n := len(sink.Recorder.Of(events.Executed)); n != 1 {
		t.Errorf("%d executed events, want 1", n)
	}
}

// A worker alone in its group that dies has its job moved by the server to
// another group that can run it, without waiting for the ack wait.
func TestLoneWorkerDiesJobMoves(t *testing.T) {
	r := newRig(t, rigOptions{})
	a := r.addWorker("a", 1, "m1")
	r.addWorker("b", 1, "m1", "m2") // another group: it has another model too
	if a.w.Group() == r.workers["b"].w.Group() {
		t.Fatal("a and b should be in different groups")
	}
	// Only a can take it at first: b is made busy.
	_, busyErr, _ := r.startRun(`{"version":1,"nodes":[{"id":"busy","type":"ModelText","inputs":{"model":"m2","ms":800}}]}`, "busy")
	sink, errc, first := r.startRun(`{"version":1,"nodes":[{"id":"m","type":"ModelText","inputs":{"model":"m1","ms":1500}}]}`, "m")
	if on := first(); on != "a" {
		t.Skipf("the node went to %s first (b was free already); nothing to move", on)
	}
	start := time.Now()
	a.die()
	if end := <-errc; end.err != nil {
		t.Fatal(end.err)
	} else if got, _ := value.AsString(output(t, end.res, "m", "STRING")); got != "weights of m1" {
		t.Errorf("the moved node gave %q", got)
	}
	if end := <-busyErr; end.err != nil {
		t.Fatal(end.err)
	}
	moved := false
	for _, e := range sink.Recorder.Of(events.Log) {
		moved = moved || strings.Contains(e.Message, "its worker is gone; it runs on another one")
	}
	if !moved {
		t.Errorf("no word of the move in the node's log: %v", sink.Recorder.Of(events.Log))
	}
	t.Logf("finished %s after the worker died", time.Since(start).Round(time.Millisecond))
}

// The NATS server restarts while a node runs on a worker: the run still
// completes, with the node's result.
func TestNATSRestartMidRun(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addWorker("w1", 1)
	_, errc, _ := r.startRun(`{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":2000,"steps":20,"value":9}}]}`, "s")
	addr := strings.TrimPrefix(r.nats.URL(), "nats://")
	r.nats.Shutdown()
	time.Sleep(300 * time.Millisecond)
	srv, err := natsd.Start(natsd.Config{Listen: addr, Dir: filepath.Join(r.dir, "nats"), Token: r.token})
	if err != nil {
		t.Fatal(err)
	}
	r.nats = srv
	select {
	case end := <-errc:
		if end.err != nil {
			t.Fatal(end.err)
		}
		if got, _ := value.AsInt(output(t, end.res, "s", "INT")); got != 9 {
			t.Errorf("the node gave %d, want 9", got)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not complete after the NATS restart")
	}
}

// After the NATS server restarts, the server still knows the workers that
// were there, and learns of one that joins, though its watcher of the
// workers bucket may not come back by itself.
func TestWorkersKnownAfterNATSRestart(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addWorker("w1", 1, "m1")
	r.restartNATS()
	r.addWorker("w2", 1, "m2")
	// Longer than a worker may go unheard, so that a server that lost the
	// heartbeats drops w1.
	time.Sleep(3 * deadAfter)
	var names []string
	for _, b := range r.runner.Workers() {
		names = append(names, b.Name)
	}
	if strings.Join(names, " ") != "w1 w2" {
		t.Errorf("workers known after the restart: %v, want w1 w2", names)
	}
	if strings.Contains(r.log.String(), "is gone") {
		t.Errorf("a live worker was dropped after the restart:\n%s", r.log.String())
	}
}

func (r *rig) restartNATS() {
	r.t.Helper()
	addr := strings.TrimPrefix(r.nats.URL(), "nats://")
	r.nats.Shutdown()
	time.Sleep(300 * time.Millisecond)
	// The same address, so that clients reconnect; the port may take a
	// moment to be free again (or be taken meanwhile: then this fails).
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var srv *natsd.Server
		if srv, err = natsd.Start(natsd.Config{Listen: addr, Dir: filepath.Join(r.dir, "nats"), Token: r.token}); err == nil {
			r.nats = srv
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("restarting NATS on %s: %v", addr, err)
		}
	}
}

// Workers authenticate with a token or an NKey; wrong credentials are
// refused with a message that names the flag to check.
func TestCredentialsRefused(t *testing.T) {
	dir := t.TempDir()
	srv, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "a"), Token: "right"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for _, c := range []struct {
		auth cluster.Auth
		want string
	}{
		{cluster.Auth{Token: "wrong"}, "refused the credentials (authorization violation): check the token (--token"},
		{cluster.Auth{}, "it needs credentials: pass --token"},
	} {
		_, err := cluster.Connect(srv.URL(), c.auth, "test")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.auth, err, c.want)
		}
	}
	nc, err := cluster.Connect(srv.URL(), cluster.Auth{Token: "right"}, "test")
	if err != nil {
		t.Fatalf("the right token: %v", err)
	}
	nc.Close()

	// NKeys: the server lists a worker's public key; the worker holds the seed.
	good, bad := newSeed(t, dir, "good"), newSeed(t, dir, "bad")
	srv2, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "b"), NKeys: []string{good.pub}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	if _, err := cluster.Connect(srv2.URL(), cluster.Auth{NKeySeed: bad.file}, "test"); err == nil || !strings.Contains(err.Error(), "check the NKey seed (--nkey "+bad.file+"): its public key is not among those the server allows") {
		t.Errorf("a key the server does not list: %v", err)
	}
	nc, err = cluster.Connect(srv2.URL(), cluster.Auth{NKeySeed: good.file}, "test")
	if err != nil {
		t.Fatalf("the listed key: %v", err)
	}
	nc.Close()

	// Without credentials, an embedded server listens only on loopback.
	if _, err := natsd.Start(natsd.Config{Listen: "0.0.0.0:0", Dir: filepath.Join(dir, "c")}); err == nil || !strings.Contains(err.Error(), "without credentials") {
		t.Errorf("listening on all addresses without credentials: %v", err)
	}
}

type seed struct{ pub, file string }

func newSeed(t *testing.T, dir, name string) seed {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	file := filepath.Join(dir, name+".nk")
	if err := os.WriteFile(file, s, 0o600); err != nil {
		t.Fatal(err)
	}
	return seed{pub, file}
}
