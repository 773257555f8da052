package engine

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/engine/cache"
	pb "github.com/face0/face0/plugins/proto"
)

// writer stores finished nodes' outputs in the cache in the background:
// marshalling a large output and writing it must not hold up the nodes that
// wait for it, nor the end of the run. A run that needs a key still being
// written waits for that write only. The backlog is bounded: past
// maxBacklog bytes a run waits for the disk to catch up.
type writer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending map[cache.Key]chan struct{}
	bytes   int64
	wg      sync.WaitGroup
}

const maxBacklog = 512 << 20

func newWriter() *writer {
	w := &writer{pending: map[cache.Key]chan struct{}{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// put stores outs under k, then calls done (the outputs are no longer read).
func (w *writer) put(c Cache, k cache.Key, outs *pb.Outputs, producer string, done func()) {
	size := int64(proto.Size(outs))
	w.mu.Lock()
	for w.bytes > 0 && w.bytes+size > maxBacklog {
		w.cond.Wait()
	}
	w.bytes += size
	ch := make(chan struct{})
	prev := w.pending[k]
	w.pending[k] = ch
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if prev != nil {
			<-prev // the same key: the later write lands last
		}
		var b []byte
		var err error
		ferr := readSafely(func() { b, err = (proto.MarshalOptions{Deterministic: true}).Marshal(outs) })
		done()
		if ferr == nil && err == nil {
			// Caching is best-effort: a full disk must not fail the run.
			_ = c.Put(k, b, producer)
		}
		w.mu.Lock()
		w.bytes -= size
		if w.pending[k] == ch {
			delete(w.pending, k)
		}
		close(ch)
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
}

// waitKey returns once no write of k is under way.
func (w *writer) waitKey(k cache.Key) {
	w.mu.Lock()
	ch := w.pending[k]
	w.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Wait blocks until every cache write of finished runs is done. Call it
// before closing the cache or the runner: the writes read outputs the runner
// lent.
func (e *Engine) Wait() { e.writes.wg.Wait() }

// hold counts the readers of a node's outputs that a Releaser lent: the run,
// until no dependent needs them, and a background cache write. The last one
// releases them.
type hold struct {
	n      atomic.Int32
	rel    Releaser
	values map[string]*pb.Value
}

func newHold(rel Releaser, outs *pb.Outputs) *hold {
	h := &hold{rel: rel, values: outs.GetValues()}
	h.n.Store(1)
	return h
}

func (h *hold) add() {
	if h != nil {
		h.n.Add(1)
	}
}

func (h *hold) drop() {
	if h != nil && h.n.Add(-1) == 0 {
		h.rel.Release(h.values)
	}
}

// readSafely runs f, which reads node outputs, turning a memory fault into an
// error: a runner's outputs may map memory that another process can cut
// short (a plugin's shared-memory file), which must fail the read, not the
// process.
func readSafely(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading outputs: %v", r)
		}
	}()
	f()
	return nil
}
