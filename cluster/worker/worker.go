// Package worker runs nodes for face0 servers on this machine: it pulls jobs
// from its group's JetStream consumer one at a time per slot, runs them on
// the machine's plugin host, and sends back progress, previews, logs and the
// result, with tensors through the object store. `face0 worker` is this
// package behind flags.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
)

// Host is the machine's plugin host (plugins/host.Manager).
type Host interface {
	engine.Runner
	engine.Releaser
	Nodes() []engine.NodeDef
	Types() []*pb.TypeSpec
	Refresh(ctx context.Context) []error
}

// Options of a worker.
type Options struct {
	Name  string   // shown on the server (default: the host name)
	Slots int      // nodes at once (default 1)
	GPU   string   // the GPU's name; "" when the machine has none
	Dirs  *pb.Dirs // this machine's folders, given to every node
	// Models lists the model folders present, for the advert.
	Models func() []string
	// AckWait is how long a job may go without a heartbeat before JetStream
	// gives it to another worker (default 30 s); heartbeats go every third
	// of it while a node runs.
	AckWait time.Duration
	Beat    time.Duration // how often the worker says it is alive (default 1 s)
	Refresh time.Duration // how often it asks its plugins for their specs again (default 30 s)
	Memory  int64         // bytes of tensors kept at hand (default 1 GiB)
	Version string        // face0's version, for the advert
	Log     io.Writer
	Verbose bool // log every job taken
}

// Worker runs jobs. Make one with New, then Run it.
type Worker struct {
	bus  *cluster.Bus
	host Host
	o    Options
	id   string

	started time.Time
	busy    atomic.Int32

	mu       sync.Mutex
	group    string
	consumer jetstream.Consumer
	rpcSubs  []*nats.Subscription

	// runCtx ends running nodes (Abort); stop ends taking new ones.
	runCtx   context.Context
	abort    context.CancelFunc
	inflight sync.WaitGroup

	// running are the nodes running now, to stop for a connection lost
	// for good; cut holds the timers that do, while it is away.
	running map[uint64]runningNode
	nextRun uint64
	cut     []*time.Timer

	ran, dupes, failed, cancelled, dropped, waited atomic.Int64
}

// New prepares a worker on bus for the nodes of host.
func New(bus *cluster.Bus, h Host, o Options) (*Worker, error) {
	if o.Name == "" {
		o.Name, _ = os.Hostname()
	}
	if o.Slots <= 0 {
		o.Slots = 1
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Beat <= 0 {
		o.Beat = time.Second
	}
	if o.Refresh <= 0 {
		o.Refresh = 30 * time.Second
	}
	if o.Memory == 0 {
		o.Memory = 1 << 30
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dirs == nil {
		o.Dirs = &pb.Dirs{}
	}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	w := &Worker{bus: bus, host: h, o: o, id: cluster.Token(o.Name) + "-" + hex.EncodeToString(suffix[:]), started: time.Now()}
	w.runCtx, w.abort = context.WithCancel(context.Background())
	w.running = map[uint64]runningNode{}
	if o.Memory > 0 {
		bus.Objects.KeepInMemory(o.Memory, true)
	}
	// The worker owns the connection's disconnect and reconnect handlers.
	bus.NC.SetDisconnectErrHandler(func(_ *nats.Conn, err error) { w.onDisconnect(err) })
	bus.NC.SetReconnectHandler(func(nc *nats.Conn) { w.onReconnect(nc) })
	return w, nil
}

// errCutOff stops a node whose worker lost its connection to NATS for too
// long: JetStream has handed its job to another worker by then (or will,
// once it is back), so finishing it here would only run it twice, a saved
// file twice, on a machine nobody hears from.
var errCutOff = errors.New("this worker lost its connection to NATS for too long, so its job went to another worker")

type runningNode struct {
	stop    context.CancelCauseFunc
	claimed bool // a node with side effects, claimed by this worker
}

// onDisconnect starts the clocks of a lost connection: after the ack wait,
// JetStream hands every job of this worker out again; a claimed node stops
// sooner, once other workers count this one dead (cluster.BeatAge) and
// may take its claim over, for its file must be written once.
func (w *Worker) onDisconnect(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cut != nil || w.bus.NC.IsClosed() {
		return
	}
	why := "closed"
	if err != nil {
		why = err.Error()
	}
	w.logf("lost the connection to NATS (%s): taking no new nodes; a node still running if it stays away %s stops (one with side effects after %s), and its job goes to another worker",
		why, w.o.AckWait, min(w.o.AckWait, cluster.BeatAge))
	w.cut = []*time.Timer{
		time.AfterFunc(min(w.o.AckWait, cluster.BeatAge), func() { w.dropRunning(true) }),
		time.AfterFunc(w.o.AckWait, func() { w.dropRunning(false) }),
	}
}

func (w *Worker) onReconnect(nc *nats.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.cut {
		t.Stop()
	}
	w.cut = nil
	w.logf("connected to NATS again (%s): taking nodes", nc.ConnectedUrlRedacted())
}

// dropRunning stops the running nodes (only the claimed ones), for the
// connection has been away too long.
func (w *Worker) dropRunning(onlyClaimed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cut == nil || w.bus.NC.IsConnected() {
		return
	}
	for _, n := range w.running {
		if n.claimed || !onlyClaimed {
			n.stop(errCutOff)
		}
	}
}

// track registers a running node's stop until the returned func.
func (w *Worker) track(stop context.CancelCauseFunc, claimed bool) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextRun++
	id := w.nextRun
	w.running[id] = runningNode{stop, claimed}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.running, id)
	}
}

// ID is the worker's unique name on the bus.
func (w *Worker) ID() string { return w.id }

// Group is the group the worker pulls for now.
func (w *Worker) Group() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.group
}

// Stats count the jobs this worker handled.
type Stats struct {
	Ran       int64 // nodes run (including failed ones)
	Dupes     int64 // jobs acked without running: their result was there already
	Failed    int64 // nodes that failed
	Cancelled int64 // nodes stopped because their server asked
	Dropped   int64 // nodes stopped because the connection was lost for the ack wait
	Waited    int64 // deliveries put back: another worker ran the job (side effects)
}

// Stats says what the worker did so far.
func (w *Worker) Stats() Stats {
	return Stats{Ran: w.ran.Load(), Dupes: w.dupes.Load(), Failed: w.failed.Load(), Cancelled: w.cancelled.Load(), Dropped: w.dropped.Load(), Waited: w.waited.Load()}
}

func (w *Worker) logf(format string, args ...any) {
	fmt.Fprintf(w.o.Log, "face0 worker %s: "+format+"\n", append([]any{w.o.Name}, args...)...)
}

// Run takes jobs until ctx ends, then lets the running nodes finish (Abort
// stops them, and hands their jobs back at once), says goodbye and returns.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.join(ctx); err != nil {
		return err
	}
	var loops sync.WaitGroup
	loops.Add(2 + w.o.Slots)
	go func() { defer loops.Done(); w.beatLoop(ctx) }()
	go func() { defer loops.Done(); w.refreshLoop(ctx) }()
	for range w.o.Slots {
		go func() { defer loops.Done(); w.slot(ctx) }()
	}
	w.logf("ready: %d slot(s), group %s, on %s", w.o.Slots, w.Group(), w.bus.NC.ConnectedUrlRedacted())
	loops.Wait()
	w.inflight.Wait()
	w.mu.Lock()
	for _, s := range w.rpcSubs {
		_ = s.Unsubscribe()
	}
	w.mu.Unlock()
	// Gone, not dead: servers stop counting on this worker at once.
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.bus.Workers.Delete(dctx, cluster.WorkerKey(w.id))
	return nil
}

// Abort stops the running nodes and hands their jobs back for another
// worker at once.
func (w *Worker) Abort() { w.abort() }

// join describes this machine's capabilities, makes sure its group's
// consumer exists, and says hello.
func (w *Worker) join(ctx context.Context) error {
	caps, err := cluster.NewCaps(w.host.Nodes(), w.host.Types(), w.models(), w.o.GPU != "")
	if err != nil {
		return err
	}
	if err := w.switchGroup(ctx, caps); err != nil {
		return err
	}
	return w.beat(ctx)
}

func (w *Worker) models() []string {
	if w.o.Models == nil {
		return nil
	}
	return w.o.Models()
}

// switchGroup publishes caps, makes sure the group's consumer exists, and
// pulls from it from now on; questions for the group are answered here too.
func (w *Worker) switchGroup(ctx context.Context, caps *cluster.Caps) error {
	raw, err := json.Marshal(caps)
	if err != nil {
		return err
	}
	if _, err := w.bus.Workers.Put(ctx, cluster.CapsKey(caps.Group), raw); err != nil {
		return fmt.Errorf("advertise capabilities: %w", err)
	}
	cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, cluster.JobsStream, jetstream.ConsumerConfig{
		Durable:       cluster.ConsumerName(caps.Group),
		Description:   "face0 workers of group " + caps.Group,
		FilterSubject: cluster.GroupJobs(caps.Group),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.o.AckWait,
		MaxDeliver:    -1,
		// A group nobody pulls from for a day is gone; its jobs stay in
		// the stream until their servers move them.
		InactiveThreshold: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("set up the consumer of group %s: %w", caps.Group, err)
	}
	var subs []*nats.Subscription
	for what, h := range map[string]nats.MsgHandler{"fingerprint": w.answerFingerprint, "verify": w.answerVerify} {
		s, err := w.bus.NC.QueueSubscribe(cluster.RPCSubject(caps.Group, what), "face0-workers", h)
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	w.mu.Lock()
	old := w.rpcSubs
	w.group, w.consumer, w.rpcSubs = caps.Group, cons, subs
	w.mu.Unlock()
	for _, s := range old {
		_ = s.Unsubscribe()
	}
	return nil
}

func (w *Worker) beat(ctx context.Context) error {
	host, _ := os.Hostname()
	b := cluster.Beat{Worker: w.id, Name: w.o.Name, Host: host, Group: w.Group(), Slots: w.o.Slots, Busy: int(w.busy.Load()),
		GPU: w.o.GPU, Version: w.o.Version, Started: w.started}
	raw, _ := json.Marshal(b)
	_, err := w.bus.Workers.Put(ctx, cluster.WorkerKey(w.id), raw)
	return err
}

func (w *Worker) beatLoop(ctx context.Context) {
	t := time.NewTicker(w.o.Beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, w.o.Beat*3)
			_ = w.beat(bctx) // NATS away: the next beat says it again
			cancel()
		}
	}
}

// refreshLoop asks the plugins for their specs now and then: models come and
// go (a Train node writes one), and with them what this worker can run.
func (w *Worker) refreshLoop(ctx context.Context) {
	t := time.NewTicker(w.o.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range w.host.Refresh(ctx) {
			w.logf("node specs: %v", p)
		}
		caps, err := cluster.NewCaps(w.host.Nodes(), w.host.Types(), w.models(), w.o.GPU != "")
		if err != nil || caps.Group == w.Group() {
			continue
		}
		if err := w.switchGroup(ctx, caps); err != nil {
			w.logf("capabilities changed but could not be advertised: %v", err)
			continue
		}
		w.logf("capabilities changed: now group %s", caps.Group)
		_ = w.beat(ctx)
	}
}

// slot takes one job at a time: Fetch(1), never Consume(), which would
// take up to 500 jobs ahead and hold them unacked should the worker die.
func (w *Worker) slot(ctx context.Context) {
	for ctx.Err() == nil {
		w.mu.Lock()
		cons := w.consumer
		w.mu.Unlock()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			// NATS is away or the consumer is being replaced: wait a little.
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		select {
		case msg, ok := <-batch.Messages():
			if !ok {
				continue // nothing within the wait
			}
			if !w.bus.NC.IsConnected() {
				// Arrived as the connection went: it cannot be held with
				// heartbeats nor acked; JetStream gives it out again.
				continue
			}
			w.inflight.Add(1)
			w.handle(msg)
			w.inflight.Done()
		case <-ctx.Done():
			// Stopping: a job that still arrives for this pull goes back at
			// once, to another worker.
			go func() {
				for msg := range batch.Messages() {
					_ = msg.Nak()
				}
			}()
			return
		}
	}
}

var errCancelled = errors.New("cancelled by its server")

// isGone reports whether a job's server asked for its end: its result is
// no longer wanted.
func isGone(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errCancelled) }
