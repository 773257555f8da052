package dispatch

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
)

// flight is a job out on the bus. Guarded by Runner.mu: group, seq,
// attempt, sentAt, checked, waiting.
type flight struct {
	id       string
	req      *pb.ExecuteRequest // as the engine gave it
	want     *engine.NodeDef
	body     []byte
	bodyName string

	group   string
	seq     uint64 // the job's message in the jobs stream
	attempt int
	sentAt  time.Time
	checked time.Time
	waiting bool // told the user no worker can take it now

	done  chan result
	local chan struct{} // run it here instead

	mu        sync.Mutex // guards the fields below and calls of on
	on        func(*pb.ExecuteEvent)
	over      bool
	latest    uint64           // the newest delivery heard from
	delivered map[uint64]int64 // events received, per delivery
}

type result struct {
	hdr      nats.Header
	data     []byte
	delivery uint64
	events   int64
}

// finish stops forwarding events: the engine is told of none after the
// node's end.
func (f *flight) finish() {
	f.mu.Lock()
	f.over = true
	f.mu.Unlock()
}

// awaitEvents waits until n events of delivery d arrived, at most for wait.
func (f *flight) awaitEvents(d uint64, n int64, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		got := f.delivered[d]
		f.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// event passes an event on to the engine, unless it comes from a delivery
// older than one already heard from (a worker that lost the job to another).
func (f *flight) event(delivery uint64, ev *pb.ExecuteEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delivered[delivery]++
	if f.over || delivery < f.latest {
		return
	}
	f.latest = delivery
	f.on(ev)
}

// note tells the user something about the node, as a log line of its own.
func (f *flight) note(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.over {
		f.on(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Log{Log: &pb.Log{Level: pb.Log_INFO, Message: msg}}})
	}
}

func jobOf(subject string) string {
	i := strings.LastIndexByte(subject, '.')
	return subject[i+1:]
}

func (r *Runner) onEvent(m *nats.Msg) {
	r.mu.Lock()
	f := r.flights[jobOf(m.Subject)]
	r.mu.Unlock()
	if f == nil {
		return
	}
	ev := &pb.ExecuteEvent{}
	if proto.Unmarshal(m.Data, ev) != nil {
		return
	}
	d, _ := strconv.ParseUint(m.Header.Get(cluster.HdrDelivery), 10, 64)
	f.event(d, ev)
}

func (r *Runner) onResult(h nats.Header, data []byte) {
	r.mu.Lock()
	f := r.flights[h.Get(cluster.HdrJob)]
	r.mu.Unlock()
	if f == nil {
		return // a second run's result, or one for a node long interrupted
	}
	d, _ := strconv.ParseUint(h.Get(cluster.HdrDelivery), 10, 64)
	n, _ := strconv.ParseInt(h.Get(cluster.HdrEvents), 10, 64)
	select {
	case f.done <- result{hdr: h, data: data, delivery: d, events: n}:
	default: // it has one already
	}
}

// monitorLoop notices dead workers, moves their jobs, and finds jobs that
// vanished.
func (r *Runner) monitorLoop() {
	defer r.loops.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.checkWorkers()
			r.checkFlights()
		}
	}
}

// checkFlights moves jobs whose group has no live worker left, and sends
// again jobs that left the queue without a result (a NATS server that lost
// unsynced writes in a crash).
func (r *Runner) checkFlights() {
	type move struct {
		f      *flight
		lost   bool
		seq    uint64
		target string
	}
	var moves []move
	now := time.Now()
	r.mu.Lock()
	judging := !r.since.IsZero() && now.Sub(r.since) >= r.o.DeadAfter
	live := r.liveGroups()
	for _, f := range r.flights {
		if f.group == "" || f.sentAt.IsZero() || !judging {
			continue
		}
		if !live[f.group] {
			moves = append(moves, move{f: f, seq: f.seq})
			continue
		}
		if now.Sub(f.checked) > 5*time.Second {
			f.checked = now
			moves = append(moves, move{f: f, lost: true, seq: f.seq})
		}
	}
	r.mu.Unlock()
	for _, mv := range moves {
		if mv.lost {
			r.checkLost(mv.f, mv.seq)
			continue
		}
		r.move(mv.f, mv.seq)
	}
}

// move sends a job whose group died to another group, or runs it here.
func (r *Runner) move(f *flight, seq uint64) {
	g, _ := r.pick(f.req.NodeType, f.req.Inputs, f.want, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch {
	case g != "":
		_ = r.bus.Jobs.DeleteMsg(ctx, seq)
		f.note("its worker is gone; it runs on another one")
		if err := r.publish(ctx, f, g); err != nil {
			r.mu.Lock()
			f.checked = time.Now()
			r.mu.Unlock()
		}
	case r.localCan(f.req) == nil:
		_ = r.bus.Jobs.DeleteMsg(ctx, seq)
		f.note("its worker is gone and no other can run it; it runs on this server")
		r.mu.Lock()
		f.sentAt = time.Time{} // no longer watched
		r.mu.Unlock()
		select {
		case f.local <- struct{}{}:
		default:
		}
	default:
		r.mu.Lock()
		told := f.waiting
		f.waiting = true
		r.mu.Unlock()
		if !told {
			f.note("its worker is gone and no other worker that can run it is connected; it waits for one (interrupt the prompt to give up)")
		}
	}
}

// checkLost sends a job again when it is neither in the queue nor done.
func (r *Runner) checkLost(f *flight, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.bus.Jobs.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		return // still queued or being run (or NATS cannot say now)
	}
	raw, err := r.bus.Results.GetLastMsgForSubject(ctx, cluster.ResultSubject(r.o.ID, f.id))
	if err == nil {
		r.onResult(raw.Header, raw.Data) // stored while the consumer was away
		return
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return
	}
	r.mu.Lock()
	g := f.group
	current := f.seq == seq
	r.mu.Unlock()
	if !current {
		return
	}
	f.note("its job left the queue without a result (the NATS server lost it?); sent again")
	_ = r.publish(ctx, f, g)
}
