// Package dispatch is the engine's runner for a face0 server with workers:
// each node goes to a group of workers that can run it, through a JetStream
// work queue, and runs on this machine's plugin host when no worker can. It
// is another engine.Runner, not a second engine: the engine schedules,
// caches and reports as it always does, and a graph may span machines.
package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
)

// Local is this machine's plugin host (plugins/host.Manager).
type Local interface {
	engine.Runner
	engine.Releaser
	Nodes() []engine.NodeDef
	Types() []*pb.TypeSpec
}

// Options of a Runner.
type Options struct {
	// ID names this server on the bus. Keep it across restarts (face0 serve
	// derives it from its home): jobs a previous run left are purged at start.
	ID string
	// LocalSlots bounds the nodes run here at once (default: the CPU count,
	// at least 2). The engine's own parallelism can then be high: nodes
	// waiting for workers cost nothing here.
	LocalSlots int
	// DeadAfter is how long a worker may miss heartbeats before its jobs go
	// elsewhere (default 5 s).
	DeadAfter time.Duration
	Log       io.Writer
}

// Runner runs nodes on workers and on this machine.
type Runner struct {
	bus   *cluster.Bus
	local Local
	o     Options

	localSem chan struct{}

	mu       sync.Mutex
	workers  map[string]*member // by worker id
	groups   map[string]*group
	flights  map[string]*flight
	localM   *cluster.Matcher // what this machine can run
	defs     map[string]engine.NodeDef
	since    time.Time // connected to NATS since; zero while not
	watchErr error

	stop    chan struct{}
	loops   sync.WaitGroup
	subs    []*nats.Subscription
	results jetstream.ConsumeContext
	watcher jetstream.KeyWatcher // guarded by mu; replaced by watch
	// rewatchAt: when to follow the workers bucket anew (zero: no need).
	rewatchAt time.Time
	closed    sync.Once
}

var (
	_ engine.Runner   = (*Runner)(nil)
	_ engine.Releaser = (*Runner)(nil)
)

type member struct {
	beat cluster.Beat
	seen time.Time
	rev  uint64 // the revision of the heartbeat last seen
}

type group struct {
	id       string
	m        *cluster.Matcher
	inflight int // jobs this server sent there, not finished
}

// New starts dispatching on bus, with local as this machine's host.
func New(ctx context.Context, bus *cluster.Bus, local Local, o Options) (*Runner, error) {
	if o.ID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ID = hex.EncodeToString(b[:])
	}
	o.ID = cluster.Token(o.ID)
	if o.LocalSlots <= 0 {
		o.LocalSlots = max(2, runtime.NumCPU())
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &Runner{
		bus: bus, local: local, o: o, localSem: make(chan struct{}, o.LocalSlots),
		workers: map[string]*member{}, groups: map[string]*group{}, flights: map[string]*flight{},
		since: time.Now(), stop: make(chan struct{}),
	}
	r.refreshLocal()
	// What workers send back is the engine's now; a node that passes a
	// tensor on unchanged sends back one this server has already.
	bus.Objects.KeepInMemory(256<<20, false)
	// Jobs and results of this server's previous run are nobody's now.
	_ = bus.Jobs.Purge(ctx, jetstream.WithPurgeSubject(cluster.DispatcherJobs(o.ID)))
	_ = bus.Results.Purge(ctx, jetstream.WithPurgeSubject(cluster.DispatcherResults(o.ID)))

	sub, err := bus.NC.Subscribe(cluster.DispatcherEvents(o.ID), r.onEvent)
	if err != nil {
		return nil, err
	}
	r.subs = append(r.subs, sub)
	cons, err := bus.JS.OrderedConsumer(ctx, cluster.ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cluster.DispatcherResults(o.ID)}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("follow results: %w", err)
	}
	if r.results, err = cons.Consume(func(m jetstream.Msg) { r.onResult(m.Headers(), m.Data()) }); err != nil {
		r.Close()
		return nil, fmt.Errorf("follow results: %w", err)
	}
	// The workers already there are known before New returns.
	if err := r.watch(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("follow workers: %w", err)
	}
	r.loops.Add(2)
	go r.watchLoop()
	go r.monitorLoop()
	return r, nil
}

// ID is this server's name on the bus.
func (r *Runner) ID() string { return r.o.ID }

// Close stops dispatching: jobs not yet taken are withdrawn. Call it once
// the engine's runs are over.
func (r *Runner) Close() {
	r.closed.Do(func() {
		close(r.stop)
		r.mu.Lock()
		if r.watcher != nil {
			_ = r.watcher.Stop()
		}
		r.mu.Unlock()
		r.loops.Wait()
		if r.results != nil {
			r.results.Stop()
		}
		for _, s := range r.subs {
			_ = s.Unsubscribe()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.bus.Jobs.Purge(ctx, jetstream.WithPurgeSubject(cluster.DispatcherJobs(r.o.ID)))
	})
}

func (r *Runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, "face0: workers: "+format+"\n", args...)
}

// Release and Detach concern what the local host lent; what came from
// workers is owned already.
func (r *Runner) Release(values map[string]*pb.Value) { r.local.Release(values) }

func (r *Runner) Detach(values map[string]*pb.Value) (map[string]*pb.Value, error) {
	return r.local.Detach(values)
}

// Execute runs a node on a group of workers that can run it, or here when
// none can.
func (r *Runner) Execute(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	want, known := r.def(req.NodeType)
	var wantp *engine.NodeDef
	if known {
		wantp = &want
	}
	if r.runsHere(req, wantp) {
		return r.runLocal(ctx, req, on)
	}
	g, reasons := r.pick(req.NodeType, req.Inputs, wantp, "")
	if g == "" {
		if r.localCan(req) == nil {
			return r.runLocal(ctx, req, on)
		}
		return nil, fmt.Errorf("no connected worker can run it, nor can this server (%s)", reasons)
	}
	for attempt := 0; ; attempt++ {
		f := &flight{id: newJobID(), req: req, want: wantp, on: on, done: make(chan result, 1), local: make(chan struct{}, 1), delivered: map[uint64]int64{}}
		outs, again, err := r.remote(ctx, f, g)
		if !again || attempt >= 2 {
			return outs, err
		}
		// A tensor expired from the object store: put everything again.
		r.bus.Objects.Forget()
		g, _ = r.pick(req.NodeType, req.Inputs, wantp, "")
		if g == "" {
			return r.runLocal(ctx, req, on)
		}
	}
}

// runsHere says whether a node stays on this machine whatever the workers
// can do: a node with side effects writes into this server's folders (the
// output folder /view serves), so it runs here when this machine has it.
func (r *Runner) runsHere(req *pb.ExecuteRequest, want *engine.NodeDef) bool {
	if want == nil || !want.Spec.SideEffects {
		return false
	}
	return r.localCan(req) == nil
}

func (r *Runner) runLocal(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	select {
	case r.localSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.localSem }()
	return r.local.Execute(ctx, req, on)
}

// remote sends the job to group g (and elsewhere should g die) and waits for
// its result. again: a tensor it names was gone, send it again.
func (r *Runner) remote(ctx context.Context, f *flight, g string) (outs *pb.Outputs, again bool, err error) {
	inputs, err := r.bus.Objects.Send(ctx, f.req.Inputs)
	if err != nil {
		return nil, false, err
	}
	sent := &pb.ExecuteRequest{NodeType: f.req.NodeType, NodeId: f.req.NodeId, Inputs: inputs, PromptId: f.req.PromptId, Workflow: f.req.Workflow}
	body, err := proto.Marshal(sent)
	if err != nil {
		return nil, false, err
	}
	f.body, f.bodyName = body, ""
	if len(body) > cluster.MaxMessage {
		if f.bodyName, err = r.bus.Objects.PutBody(ctx, body); err != nil {
			return nil, false, err
		}
		f.body = nil
	}
	r.mu.Lock()
	r.flights[f.id] = f
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.flights, f.id)
		if gr := r.groups[f.group]; gr != nil && f.group != "" {
			gr.inflight--
		}
		r.mu.Unlock()
	}()
	if err := r.publish(ctx, f, g); err != nil {
		return nil, false, err
	}
	select {
	case res := <-f.done:
		return r.finish(ctx, f, res)
	case <-f.local:
		f.finish()
		outs, err := r.runLocal(ctx, f.req, f.on)
		return outs, false, err
	case <-ctx.Done():
		f.finish()
		r.withdraw(f)
		return nil, false, ctx.Err()
	}
}

// publish sends the job to group g, for as long as NATS is away.
func (r *Runner) publish(ctx context.Context, f *flight, g string) error {
	r.mu.Lock()
	if old := r.groups[f.group]; old != nil && f.group != "" {
		old.inflight--
	}
	f.group = g
	if gr := r.groups[g]; gr != nil {
		gr.inflight++
	}
	f.attempt++
	attempt := f.attempt
	r.mu.Unlock()
	m := nats.NewMsg(cluster.JobSubject(g, r.o.ID))
	m.Data = f.body
	m.Header.Set(cluster.HdrJob, f.id)
	m.Header.Set(cluster.HdrDispatcher, r.o.ID)
	m.Header.Set(cluster.HdrNode, f.req.NodeType+" "+f.req.NodeId)
	if f.bodyName != "" {
		m.Header.Set(cluster.HdrBody, f.bodyName)
	}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := r.bus.JS.PublishMsg(pctx, m, jetstream.WithMsgID(f.id+"."+strconv.Itoa(attempt)))
		cancel()
		if err == nil {
			r.mu.Lock()
			f.seq, f.sentAt, f.checked = ack.Sequence, time.Now(), time.Now()
			r.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// withdraw takes back a job that is no longer wanted: out of the queue if
// no worker took it, and stopped on the worker that did.
func (r *Runner) withdraw(f *flight) {
	_ = r.bus.NC.Publish(cluster.CancelSubject(f.id), nil)
	r.mu.Lock()
	seq := f.seq
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.bus.Jobs.DeleteMsg(ctx, seq)
}

// finish turns a result into the node's outputs.
func (r *Runner) finish(ctx context.Context, f *flight, res result) (*pb.Outputs, bool, error) {
	// Events the worker sent before its result arrive before it, unless
	// NATS dropped some: wait for them a little.
	f.awaitEvents(res.delivery, res.events, time.Second)
	f.finish()
	worker := res.hdr.Get(cluster.HdrWorker)
	if msg := res.hdr.Get(cluster.HdrError); msg != "" {
		if res.hdr.Get(cluster.HdrErrorKind) == cluster.KindObjectGone {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("%s (on worker %s)", msg, worker)
	}
	data := res.data
	if name := res.hdr.Get(cluster.HdrBody); name != "" {
		b, err := r.bus.Objects.Get(ctx, name)
		if err != nil {
			return nil, false, fmt.Errorf("the result from worker %s: %w", worker, err)
		}
		data = b
	}
	outs := &pb.Outputs{}
	if err := proto.Unmarshal(data, outs); err != nil {
		return nil, false, fmt.Errorf("the result from worker %s cannot be read: %w", worker, err)
	}
	if err := r.bus.Objects.Receive(ctx, outs.Values); err != nil {
		if errors.Is(err, cluster.ErrObjectGone) {
			return nil, false, fmt.Errorf("the result from worker %s names a tensor the object store no longer has", worker)
		}
		return nil, false, fmt.Errorf("the result from worker %s: %w", worker, err)
	}
	return outs, false, nil
}

func newJobID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
