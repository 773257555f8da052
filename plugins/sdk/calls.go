package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/face0/face0/plugins/protocol"
)

// CancelGrace is how long a cancelled node may keep running before its plugin
// process is retired, so that a node that ignores cancellation cannot keep
// burning CPU or GPU after the user pressed stop. The host sets it through
// FACE0_CANCEL_GRACE (a Go duration).
var CancelGrace = 10 * time.Second

// calls tracks the calls a plugin process is serving, so that a node that
// ignores cancellation is stopped without hurting anyone else. Past the grace
// period the process is retired: it refuses new calls with protocol.Retired
// (the host sends them to a fresh process instead), and it tells the host,
// which is waiting in AwaitCall. The host then kills the process as soon as
// it has received the results of its other calls still running here; only
// the host knows when those have arrived, so the plugin never exits on its
// own (exiting is the only way to stop a goroutine that ignores its context).
type calls struct {
	mu      sync.Mutex
	running map[*call]struct{}
	byID    map[string]*call
	ended   recent // ids of calls that returned, for AwaitCall
	retired bool
	changed chan struct{} // closed and replaced on every change, to wake AwaitCall
	stderr  io.Writer
}

type call struct {
	id       string
	stubborn bool // cancelled, and still running past the grace period
}

func newCalls() *calls {
	return &calls{running: map[*call]struct{}{}, byID: map[string]*call{}, changed: make(chan struct{}), stderr: os.Stderr, ended: newRecent()}
}

func (cs *calls) notifyLocked() {
	close(cs.changed)
	cs.changed = make(chan struct{})
}

// begin registers a call (id is the host's name for it, possibly ""), or
// refuses it when the process is retired.
func (cs *calls) begin(id string) (*call, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.retired {
		return nil, status.Error(codes.Aborted, protocol.Retired)
	}
	c := &call{id: id}
	cs.running[c] = struct{}{}
	if id != "" {
		cs.byID[id] = c
	}
	cs.notifyLocked()
	return c, nil
}

// end unregisters a call that returned.
func (cs *calls) end(c *call) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.running, c)
	if c.id != "" {
		delete(cs.byID, c.id)
		cs.ended.add(c.id)
	}
	cs.notifyLocked()
}

// ignoredCancel records that c's node outlived its grace period, retires the
// process and says so on stderr (which the host forwards to its log).
func (cs *calls) ignoredCancel(c *call, nodeType string, grace time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.running[c]; !ok {
		return // it returned after all
	}
	c.stubborn = true
	cs.retired = true
	others := 0
	for o := range cs.running {
		if !o.stubborn {
			others++
		}
	}
	fmt.Fprintf(cs.stderr, "node %s ignored cancellation for %s; this process takes no new calls and the host stops it once its %d other running call(s) finish\n", nodeType, grace, others)
	cs.notifyLocked()
}

// AwaitCall implements protocol.Supervisor. An id not seen yet is waited for:
// the host asks right after cancelling, which can be before the call began
// here (or it never begins: then the host's deadline ends the wait).
func (cs *calls) AwaitCall(ctx context.Context, id string) (bool, error) {
	for {
		cs.mu.Lock()
		c, running := cs.byID[id]
		switch {
		case running && c.stubborn:
			cs.mu.Unlock()
			return true, nil
		case !running && cs.ended.has(id):
			cs.mu.Unlock()
			return false, nil
		}
		wake := cs.changed
		cs.mu.Unlock()
		select {
		case <-ctx.Done():
			return false, status.FromContextError(ctx.Err()).Err()
		case <-wake:
		}
	}
}

// cancelGrace is CancelGrace, or what the host set in FACE0_CANCEL_GRACE.
func cancelGrace() time.Duration {
	if s := os.Getenv(protocol.EnvCancelGrace); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return d
		}
	}
	return CancelGrace
}

// watchCancel retires the process when the call's node is still running a
// grace period after its context was cancelled.
func (cs *calls) watchCancel(ctx context.Context, done <-chan struct{}, c *call, nodeType string) {
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	grace := cancelGrace()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cs.ignoredCancel(c, nodeType, grace)
	}
}

// recent remembers the last ids, enough for the calls that can end between
// the host's cancelling one and its AwaitCall arriving. Its memory is taken
// at start, so that it does not grow with the calls served (the plugin
// memory tests would see that).
type recent struct {
	set  map[string]struct{}
	ring []string
	next int
}

const recentSize = 1024

func newRecent() recent {
	return recent{set: make(map[string]struct{}, recentSize), ring: make([]string, recentSize)}
}

func (r *recent) add(id string) {
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % recentSize
}

func (r *recent) has(id string) bool {
	_, ok := r.set[id]
	return ok
}
