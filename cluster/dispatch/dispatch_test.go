package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/plugins/value"
)

// A graph run through a worker gives what it gives on the server alone,
// its progress and logs reach the run's events, and its tensor crosses the
// network once each way it needs to.
func TestRemoteRunMatchesLocal(t *testing.T) {
	r := newRig(t, rigOptions{})
	w := r.addWorker("w1", 2)
	src := `{"version":1,"nodes":[
		{"id":"make","type":"MakeTensor","inputs":{"mb":2,"ramp":true}},
		{"id":"pass","type":"PassTensor","inputs":{"latent":{"node":"make","output":"LATENT"}}},
		{"id":"digest","type":"TensorDigest","inputs":{"latent":{"node":"pass","output":"LATENT"}}},
		{"id":"sleep","type":"Sleep","inputs":{"ms":200,"steps":4,"value":7}}]}`
	res, rec, err := r.run(context.Background(), src, "digest", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	for node, on := range ranOn(rec) {
		if on != "w1" {
			t.Errorf("node %s ran on %q, want worker w1", node, on)
		}
	}
	// The same graph on the server's own plugins.
	local := engine.New(r.local)
	wf, _, _ := workflow.Parse([]byte(src))
	plan, err := r.catalog.Compile(wf, []string{"digest", "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := local.Run(context.Background(), plan, engine.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ node, port string }{{"digest", "STRING"}, {"sleep", "INT"}} {
		got, exp := value.ToJSON(output(t, res, n.node, n.port)), value.ToJSON(output(t, want, n.node, n.port))
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("%s: remote %v, local %v", n.node, got, exp)
		}
	}
	var progress []int64
	for _, e := range rec.Of(events.Progress) {
		if e.Node == "sleep" {
			progress = append(progress, e.Value)
		}
	}
	if fmt.Sprint(progress) != "[1 2 3 4]" {
		t.Errorf("progress of the remote node: %v, want [1 2 3 4]", progress)
	}
	logged := false
	for _, e := range rec.Of(events.Log) {
		logged = logged || e.Node == "sleep" && e.Message == "slept 200 ms"
	}
	if !logged {
		t.Errorf("the remote node's own log line did not arrive: %v", rec.Of(events.Log))
	}
	// The 2 MiB tensor crossed the network twice: put once by the worker
	// (MakeTensor's output) and fetched once by the server. The worker had
	// it at hand for PassTensor and TensorDigest, and PassTensor's output,
	// the same bytes, was neither put again nor fetched again.
	if s := w.w.Stats(); s.Ran != 4 {
		t.Errorf("worker ran %d nodes, want 4", s.Ran)
	}
	if s := w.objects(t); s.Puts != 1 || s.Gets != 0 || s.Hits != 2 || s.Skips != 1 {
		t.Errorf("worker's object traffic %+v, want 1 put, 1 skipped, 0 gets, 2 hits", s)
	}
	if s := r.srvBus.Objects.Stats(); s.Puts != 0 || s.Gets != 1 || s.Hits != 1 || s.Skips != 2 {
		t.Errorf("server's object traffic %+v, want 0 puts, 2 skipped, 1 get, 1 hit", s)
	}
}

// Each node goes only to a worker that has its model; a node that no
// worker can run runs on the server; a workflow may name a model only a
// worker has, and its fingerprint comes from that worker.
func TestRoutingByModel(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, rigOptions{localModels: writeModels(t, dir, "m0")})
	a := r.addWorker("a", 1, "m1")
	b := r.addWorker("b", 1)
	var nodes []string
	for i := range 4 {
		nodes = append(nodes, fmt.Sprintf(`{"id":"m1_%d","type":"ModelText","inputs":{"model":"m1","ms":%d}}`, i, 10*i))
	}
	nodes = append(nodes, `{"id":"m0","type":"ModelText","inputs":{"model":"m0"}}`,
		`{"id":"add","type":"Add","inputs":{"a":1,"b":2}}`)
	res, rec, err := r.run(context.Background(), `{"version":1,"nodes":[`+strings.Join(nodes, ",")+`]}`, "m1_0", "m1_1", "m1_2", "m1_3", "m0", "add")
	if err != nil {
		t.Fatal(err)
	}
	on := ranOn(rec)
	for i := range 4 {
		id := fmt.Sprintf("m1_%d", i)
		if on[id] != "a" {
			t.Errorf("%s ran on %q, want worker a (the only one with model m1)", id, on[id])
		}
		if got, _ := value.AsString(output(t, res, id, "STRING")); got != "weights of m1" {
			t.Errorf("%s gave %q", id, got)
		}
	}
	if on["m0"] != "" {
		t.Errorf("m0 ran on worker %q; only the server has model m0", on["m0"])
	}
	if on["add"] == "" {
		t.Errorf("add ran on the server though both workers can run it")
	}
	if got := a.w.Stats().Ran + b.w.Stats().Ran; got != 5 {
		t.Errorf("workers ran %d nodes, want 5", got)
	}
	if b.w.Stats().Ran > 1 {
		t.Errorf("worker b ran %d nodes; it has no model, so at most the Add", b.w.Stats().Ran)
	}
}

// A node whose device input is cuda goes only to a worker that advertises a
// GPU; with none connected, the server's own plugin runs it (and judges the
// device itself, as without workers), rather than the node being refused.
func TestRoutingByGPU(t *testing.T) {
	r := newRig(t, rigOptions{})
	cpu := r.addWorker("cpu", 2)
	dev := func(ids ...string) string {
		var nodes []string
		for _, id := range ids {
			d, _, _ := strings.Cut(id, "_")
			nodes = append(nodes, fmt.Sprintf(`{"id":%q,"type":"DeviceText","inputs":{"device":%q,"tag":%q}}`, id, d, id))
		}
		return `{"version":1,"nodes":[` + strings.Join(nodes, ",") + `]}`
	}
	res, rec, err := r.run(context.Background(), dev("cuda_0", "cpu_0"), "cuda_0", "cpu_0")
	if err != nil {
		t.Fatalf("a cuda node with only a CPU worker connected: %v", err)
	}
	if on := ranOn(rec); on["cuda_0"] != "" || on["cpu_0"] != "cpu" {
		t.Errorf("ran on %v; want cuda_0 on the server, cpu_0 on worker cpu", on)
	}
	if got, _ := value.AsString(output(t, res, "cuda_0", "STRING")); got != "ran on cudacuda_0" {
		t.Errorf("cuda_0 gave %q", got)
	}
	r.addGPUWorker("gpu", "Test GPU", 2)
	ids := []string{"cuda_1", "cuda_2", "cuda_3", "cuda_4", "cpu_1", "cpu_2", "cpu_3", "cpu_4"}
	_, rec, err = r.run(context.Background(), dev(ids...), ids...)
	if err != nil {
		t.Fatal(err)
	}
	on := ranOn(rec)
	for _, id := range ids[:4] {
		if on[id] != "gpu" {
			t.Errorf("%s ran on %q, want worker gpu (the only one with a GPU)", id, on[id])
		}
	}
	for _, id := range ids[4:] {
		if on[id] == "" {
			t.Errorf("%s ran on the server though both workers can run it", id)
		}
	}
	if n := cpu.w.Stats().Ran; n > 5 {
		t.Errorf("worker cpu ran %d nodes; at most the 5 cpu ones", n)
	}
}

// A node goes only to a worker whose pack has the version the server
// validated the workflow against; a node only a worker of another version
// could run is refused with both versions named.
func TestRoutingByPackVersion(t *testing.T) {
	r := newRig(t, rigOptions{})
	old := r.addWorkerEnv("old", "", []string{"FACE0_TESTPACK_VERSION=0.9.0"}, 2, "m1", "m7")
	cur := r.addWorker("cur", 2, "m1")
	var nodes, ids []string
	for i := range 4 {
		id := fmt.Sprintf("m1_%d", i)
		ids = append(ids, id)
		nodes = append(nodes, fmt.Sprintf(`{"id":%q,"type":"ModelText","inputs":{"model":"m1","ms":%d}}`, id, 10*i))
	}
	_, rec, err := r.run(context.Background(), `{"version":1,"nodes":[`+strings.Join(nodes, ",")+`]}`, ids...)
	if err != nil {
		t.Fatal(err)
	}
	for id, on := range ranOn(rec) {
		if on != "cur" {
			t.Errorf("%s ran on %q, want worker cur (old has testpack 0.9.0, the server 1.0.0)", id, on)
		}
	}
	if n := old.w.Stats().Ran; n != 0 {
		t.Errorf("worker old ran %d nodes", n)
	}
	if n := cur.w.Stats().Ran; n != 4 {
		t.Errorf("worker cur ran %d nodes, want 4", n)
	}
	// m7: only old has it, and old's choices are not joined with those of
	// another version: the workflow is refused before anything runs.
	wf, _, _ := workflow.Parse([]byte(`{"version":1,"nodes":[{"id":"m7","type":"ModelText","inputs":{"model":"m7"}}]}`))
	if _, err := r.catalog.Compile(wf, []string{"m7"}); err == nil || !strings.Contains(err.Error(), `"m7" is not valid`) {
		t.Errorf("a model only a worker of another pack version has: %v", err)
	}
}

// A node that a worker would run twice (JetStream delivers at least once)
// runs once: a job whose result is stored is acked without running.
func TestRedeliveredJobRunsOnce(t *testing.T) {
	r := newRig(t, rigOptions{})
	w := r.addWorker("w1", 1)
	spy := &jobSpy{Bus: r.bus("spy")}
	if err := spy.watch(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.run(context.Background(), `{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":1,"value":5}}]}`, "s"); err != nil {
		t.Fatal(err)
	}
	if s := w.w.Stats(); s.Ran != 1 || s.Dupes != 0 {
		t.Fatalf("after the run: %+v", s)
	}
	// The job again, as JetStream would deliver it after a NATS crash.
	if err := spy.resend(); err != nil {
		t.Fatal(err)
	}
	r.waitFor(func() bool { return w.w.Stats().Dupes == 1 }, "the worker to see the repeated job")
	if s := w.w.Stats(); s.Ran != 1 {
		t.Errorf("the repeated job ran: %+v", s)
	}
}

// A node with side effects that only workers have, delivered a second time
// while its first delivery still runs (as JetStream did after a crash of
// the NATS server), writes its file once: the second worker finds the job
// claimed by a live worker, puts it back, and acks it when it returns to
// find the result.
func TestConcurrentDeliverySavesOnce(t *testing.T) {
	r := newRig(t, rigOptions{noLocal: true})
	w1, w2 := r.addWorker("w1", 1), r.addWorker("w2", 1)
	spy := &jobSpy{Bus: r.bus("spy")}
	if err := spy.watch(); err != nil {
		t.Fatal(err)
	}
	_, done, first := r.startRun(`{"version":1,"nodes":[{"id":"save","type":"WriteTextSlow","inputs":{"value":7,"prefix":"once","ms":1500}}]}`, "save")
	if first() == "" {
		t.Fatal("the node did not run on a worker")
	}
	// The job again, while the first worker runs it: the other, idle
	// worker takes it.
	if err := spy.resend(); err != nil {
		t.Fatal(err)
	}
	end := <-done
	if end.err != nil {
		t.Fatal(end.err)
	}
	handled := func() int64 {
		s1, s2 := w1.w.Stats(), w2.w.Stats()
		return s1.Dupes + s1.Ran + s2.Dupes + s2.Ran
	}
	r.waitFor(func() bool { return handled() == 2 }, "the second delivery to be run or acked as done")
	var files []string
	for _, w := range []*testWorker{w1, w2} {
		m, _ := filepath.Glob(filepath.Join(w.out, "once*"))
		files = append(files, m...)
	}
	if len(files) != 1 {
		t.Errorf("files written: %v, want one", files)
	}
	if ran := w1.w.Stats().Ran + w2.w.Stats().Ran; ran != 1 {
		t.Errorf("the node ran %d times", ran)
	}
	// At least once: the second delivery met the live claim and waited. It
	// waits again (an ack wait later) when the first worker, slowed by a
	// loaded machine, has not stored its result by then; that is correct.
	if waited := w1.w.Stats().Waited + w2.w.Stats().Waited; waited < 1 {
		t.Errorf("%d deliveries put back, want at least 1: the second delivery did not wait for the first worker's claim", waited)
	}
}

// A worker that dies while it runs a node with side effects leaves its
// claim behind: the worker that gets the job next takes the claim over once
// the dead one's heartbeats are old, runs the node, and the file is written
// once.
func TestSideEffectClaimTakenOver(t *testing.T) {
	r := newRig(t, rigOptions{noLocal: true})
	r.addWorker("w1", 1)
	r.addWorker("w2", 1)
	_, done, first := r.startRun(`{"version":1,"nodes":[{"id":"save","type":"WriteTextSlow","inputs":{"value":8,"prefix":"taken","ms":3000}}]}`, "save")
	r.mu.Lock()
	victim := r.workers[first()]
	r.mu.Unlock()
	if victim == nil {
		t.Fatalf("the node runs on %q, no worker of the rig", first())
	}
	victim.die()
	select {
	case end := <-done:
		if end.err != nil {
			t.Fatal(end.err)
		}
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("the node never ran again after its worker died")
	}
	var files []string
	for _, w := range r.workers {
		m, _ := filepath.Glob(filepath.Join(w.out, "taken*"))
		files = append(files, m...)
	}
	if len(files) != 1 {
		t.Errorf("files written: %v, want one", files)
	}
}

// Interrupting a run stops its remote node on the worker, and the job
// leaves the queue.
func TestInterruptStopsRemoteNode(t *testing.T) {
	r := newRig(t, rigOptions{})
	w := r.addWorker("w1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &startSink{started: make(chan struct{})}
	go func() {
		<-sink.started
		cancel()
	}()
	_, err := r.runSink(ctx, `{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":60000,"steps":600}}]}`, sink, "s")
	if !errors.Is(err, engine.ErrInterrupted) {
		t.Fatalf("got %v, want interrupted", err)
	}
	r.waitFor(func() bool { return w.w.Stats().Cancelled == 1 }, "the worker to stop the node")
	info, err := spy(r).Jobs.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d job(s) left in the queue", info.State.Msgs)
	}
}

// A job body or result over NATS's 1 MiB message limit goes through the
// object store.
func TestLargeMessagesGoThroughObjects(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addWorker("w1", 1)
	long := strings.Repeat("x", 1000<<10)
	res, rec, err := r.run(context.Background(), fmt.Sprintf(`{"version":1,"nodes":[{"id":"c","type":"Concat","inputs":{"a":%q,"b":"!"}}]}`, long), "c")
	if err != nil {
		t.Fatal(err)
	}
	if on := ranOn(rec)["c"]; on != "w1" {
		t.Fatalf("ran on %q", on)
	}
	if got, _ := value.AsString(output(t, res, "c", "STRING")); got != long+"!" {
		t.Errorf("got %d bytes back, want %d", len(got), len(long)+1)
	}
}

// Concurrent runs share the workers and each gets its own results.
func TestConcurrentRuns(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addWorker("w1", 2)
	r.addWorker("w2", 2)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fmt.Sprintf(`{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":50,"value":%d}},
				{"id":"add","type":"Add","inputs":{"a":{"node":"s","output":"INT"},"b":1000}}]}`, i)
			res, _, err := r.run(context.Background(), src, "add")
			if err != nil {
				t.Error(err)
				return
			}
			if got, _ := value.AsInt(output(t, res, "add", "INT")); got != int64(1000+i) {
				t.Errorf("run %d got %d", i, got)
			}
		}()
	}
	wg.Wait()
}

func (tw *testWorker) objects(t testing.TB) cluster.Stats { return tw.bus.Objects.Stats() }
