package dispatch_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/cluster/dispatch"
	"github.com/face0/face0/cluster/natsd"
	"github.com/face0/face0/cluster/worker"
	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
)

var testpackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "face0-dispatch-test-")
	if err == nil {
		testpackBin, err = testplugin.TestPack(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Short times, so that a dead worker's job moves within a test. deadAfter
// is 20 heartbeats: a live worker that a loaded machine (-race, 2 cores)
// keeps silent for a second must not be judged gone.
const (
	ackWait   = 2 * time.Second
	deadAfter = 2 * time.Second
)

// rig is a NATS server, a dispatching "server" with the test pack, and
// workers, each with a test pack process of its own, all in this process
// (their plugins are real processes; `face0 worker` processes are tested
// in cmd/face0).
type rig struct {
	t       testing.TB
	dir     string
	nats    *natsd.Server
	token   string
	srvBus  *cluster.Bus
	local   *host.Manager
	runner  *dispatch.Runner
	engine  *engine.Engine
	catalog *engine.Catalog
	cache   *cache.Store

	log testenv.Buffer // the runner's log

	mu      sync.Mutex
	workers map[string]*testWorker
}

type testWorker struct {
	name   string
	w      *worker.Worker
	bus    *cluster.Bus
	nc     *nats.Conn
	host   *host.Manager
	models string
	out    string // its output folder
	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once
}

type rigOptions struct {
	cache       bool
	localModels string // models folder of the server's own test pack
	noLocal     bool   // the server has no plugins: every node runs on workers
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), token: "s3cret", workers: map[string]*testWorker{}}
	srv, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(r.dir, "nats"), Token: r.token})
	if err != nil {
		t.Fatal(err)
	}
	r.nats = srv
	t.Cleanup(r.close)
	if o.noLocal {
		var problems []error
		r.local, problems = host.Start(context.Background(), nil, host.WithLog(io.Discard))
		if len(problems) > 0 {
			t.Fatal(problems)
		}
	} else {
		r.local = startHost(t, o.localModels)
	}
	bus := r.bus("server")
	r.srvBus = bus
	r.runner, err = dispatch.New(context.Background(), bus, r.local, dispatch.Options{ID: "srv", DeadAfter: deadAfter, Log: &r.log})
	if err != nil {
		t.Fatal(err)
	}
	opts := []engine.Option{engine.WithParallelism(32)}
	if o.cache {
		c, err := cache.Open(filepath.Join(r.dir, "cache"))
		if err != nil {
			t.Fatal(err)
		}
		r.cache = c
		opts = append(opts, engine.WithCache(c))
	}
	r.engine = engine.New(r.runner, opts...)
	r.recatalog()
	return r
}

func startHost(t testing.TB, models string, env ...string) *host.Manager {
	t.Helper()
	if models == "" {
		models = t.TempDir()
	}
	env = append([]string{"FACE0_MODELS=" + models}, env...)
	mgr, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: testpackBin, Env: env}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start test pack: %v", problems)
	}
	return mgr
}

// bus connects a client of the rig's NATS server.
func (r *rig) bus(name string) *cluster.Bus {
	r.t.Helper()
	return r.busAt(name, r.nats.URL())
}

// busAt connects a client through url (a proxy in front of the server).
func (r *rig) busAt(name, url string) *cluster.Bus {
	r.t.Helper()
	nc, err := cluster.Connect(url, cluster.Auth{Token: r.token}, name)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(nc.Close)
	var s *cluster.Settings
	if name == "server" {
		s = &cluster.Settings{}
	}
	bus, err := cluster.Open(context.Background(), nc, s)
	if err != nil {
		r.t.Fatal(err)
	}
	return bus
}

// recatalog builds the catalog from what the server and its workers offer now.
func (r *rig) recatalog() {
	cat, errs := engine.NewCatalog(r.runner.Nodes(), r.runner.Types())
	if len(errs) > 0 {
		r.t.Fatalf("catalog: %v", errs)
	}
	r.catalog = cat
}

// addWorker starts a worker whose models folder holds the given models
// (each a folder with a model.txt naming it) and waits until the server
// knows it.
func (r *rig) addWorker(name string, slots int, models ...string) *testWorker {
	r.t.Helper()
	return r.addGPUWorker(name, "", slots, models...)
}

// addGPUWorker is addWorker for a worker that advertises a GPU ("": none).
func (r *rig) addGPUWorker(name, gpu string, slots int, models ...string) *testWorker {
	r.t.Helper()
	return r.addWorkerEnv(name, gpu, nil, slots, models...)
}

// addWorkerEnv is addGPUWorker with environment variables for its test
// pack (FACE0_TESTPACK_VERSION: the pack's version).
func (r *rig) addWorkerEnv(name, gpu string, env []string, slots int, models ...string) *testWorker {
	r.t.Helper()
	return r.addWorkerSpec(name, workerSpec{gpu: gpu, env: env}, slots, models...)
}

// workerSpec is how a worker of addWorkerSpec differs from the others.
type workerSpec struct {
	gpu     string
	env     []string
	ackWait time.Duration // default: the rig's ackWait
	url     string        // where it connects (default: the NATS server)
}

func (r *rig) addWorkerSpec(name string, spec workerSpec, slots int, models ...string) *testWorker {
	r.t.Helper()
	dir := writeModels(r.t, r.t.TempDir(), models...)
	h := startHost(r.t, dir, spec.env...)
	if spec.url == "" {
		spec.url = r.nats.URL()
	}
	if spec.ackWait == 0 {
		spec.ackWait = ackWait
	}
	bus := r.busAt("worker "+name, spec.url)
	out := r.t.TempDir()
	w, err := worker.New(bus, h, worker.Options{Name: name, Slots: slots, GPU: spec.gpu, AckWait: spec.ackWait, Beat: 100 * time.Millisecond,
		Dirs: &pb.Dirs{Models: dir, Temp: r.t.TempDir(), Output: out, Input: r.t.TempDir()}, Memory: 256 << 20, Log: os.Stderr})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tw := &testWorker{name: name, w: w, bus: bus, nc: bus.NC, host: h, models: dir, out: out, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tw.done)
		if err := w.Run(ctx); err != nil {
			r.t.Errorf("worker %s: %v", name, err)
		}
	}()
	r.mu.Lock()
	r.workers[name] = tw
	r.mu.Unlock()
	// Before its connection closes (cleanups run last first).
	r.t.Cleanup(tw.stop)
	r.waitFor(func() bool {
		for _, b := range r.runner.Workers() {
			if b.Worker == w.ID() {
				return true
			}
		}
		return false
	}, "worker "+name+" to join")
	r.recatalog()
	return tw
}

// stop ends a worker the polite way: it finishes and says goodbye.
func (tw *testWorker) stop() {
	tw.cancel()
	<-tw.done
	tw.closed.Do(tw.host.Close)
}

// die ends a worker as a kill -9 would: its connection drops, nothing is
// acked, its plugins are gone.
func (tw *testWorker) die() {
	tw.nc.Close()
	tw.w.Abort()
	tw.cancel()
	tw.closed.Do(tw.host.Close)
}

func (r *rig) waitFor(cond func() bool, what string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) close() {
	r.engine.Wait()
	r.mu.Lock()
	ws := r.workers
	r.workers = nil
	r.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	r.runner.Close()
	r.local.Close()
	if r.cache != nil {
		r.cache.Close()
	}
	r.nats.Shutdown()
}

func (r *rig) run(ctx context.Context, src string, outputs ...string) (*engine.Result, *events.Recorder, error) {
	r.t.Helper()
	rec := &events.Recorder{}
	res, err := r.runSink(ctx, src, rec, outputs...)
	return res, rec, err
}

// ranOn maps each node to the worker its log says it ran on ("" if none:
// it ran on the server).
func ranOn(rec *events.Recorder) map[string]string {
	out := map[string]string{}
	for _, e := range rec.Of(events.Executing) {
		out[e.Node] = ""
	}
	for _, e := range rec.Of(events.Log) {
		if name, ok := strings.CutPrefix(e.Message, "runs on worker "); ok {
			name, _, _ = strings.Cut(name, " ")
			out[e.Node] = name
		}
	}
	return out
}

func output(t testing.TB, res *engine.Result, node, port string) *pb.Value {
	t.Helper()
	o := res.Outputs[node]
	if o == nil || o.Values[port] == nil {
		t.Fatalf("node %s has no output %s: %v", node, port, res.Outputs)
	}
	return o.Values[port]
}

// writeModels makes a models folder holding the named models.
func writeModels(t testing.TB, dir string, names ...string) string {
	t.Helper()
	for _, m := range names {
		if err := os.MkdirAll(filepath.Join(dir, m), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m, "model.txt"), []byte("weights of "+m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// spy is a client of its own on the rig's NATS server.
func spy(r *rig) *cluster.Bus { return r.bus("spy") }

// jobSpy records the first job the server sends, to send it again.
type jobSpy struct {
	*cluster.Bus
	mu  sync.Mutex
	job *nats.Msg
}

func (s *jobSpy) watch() error {
	_, err := s.NC.Subscribe("face0.jobs.>", func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.job == nil {
			s.job = m
		}
	})
	if err == nil {
		err = s.NC.Flush()
	}
	return err
}

func (s *jobSpy) resend() error {
	s.mu.Lock()
	job := s.job
	s.mu.Unlock()
	if job == nil {
		return fmt.Errorf("no job seen")
	}
	m := nats.NewMsg(job.Subject)
	m.Data = job.Data
	for k, v := range job.Header {
		if k != nats.MsgIdHdr { // a new message, as a redelivery is
			m.Header[k] = v
		}
	}
	_, err := s.JS.PublishMsg(context.Background(), m)
	return err
}

// startSink records events and says when the first node reports progress.
type startSink struct {
	events.Recorder
	once    sync.Once
	started chan struct{}
}

func (s *startSink) Emit(e events.Event) {
	s.Recorder.Emit(e)
	if e.Type == events.Progress {
		s.once.Do(func() { close(s.started) })
	}
}

func (r *rig) runSink(ctx context.Context, src string, sink events.Sink, outputs ...string) (*engine.Result, error) {
	r.t.Helper()
	w, _, err := workflow.Parse([]byte(src))
	if err != nil {
		r.t.Fatalf("parse: %v", err)
	}
	plan, err := r.catalog.Compile(w, outputs)
	if err != nil {
		r.t.Fatalf("compile: %v", err)
	}
	return r.engine.Run(ctx, plan, engine.RunOptions{PromptID: "p", Sink: sink})
}
