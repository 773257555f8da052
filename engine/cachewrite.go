package engine

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/engine/cache"
	pb "github.com/face0/face0/plugins/proto"
)

// writer stores finished nodes' outputs in the cache in the background:
// marshalling a large output and writing it must not hold up the nodes that
// wait for it, nor the end of the run. The writes go to the process's one
// background thread (see lowly). A run that needs a key still being written
// waits for that write only. The backlog is bounded: past maxBacklog bytes
// a run waits for the disk to catch up.
type writer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending map[cache.Key]chan struct{}
	bytes   int64
	wg      sync.WaitGroup
}

type write struct {
	c        Cache
	key      cache.Key
	outs     *pb.Outputs
	producer string
	done     func()
	size     int64
	ch       chan struct{}
}

const maxBacklog = 512 << 20

func newWriter() *writer {
	w := &writer{pending: map[cache.Key]chan struct{}{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// put queues a write of outs under k; done is called once outs are no
// longer read.
func (w *writer) put(c Cache, k cache.Key, outs *pb.Outputs, producer string, done func()) {
	j := &write{c: c, key: k, outs: outs, producer: producer, done: done, size: int64(proto.Size(outs)), ch: make(chan struct{})}
	w.mu.Lock()
	if w.bytes > 0 && w.bytes+j.size > maxBacklog {
		defer lowly.hurry()()
	}
	for w.bytes > 0 && w.bytes+j.size > maxBacklog {
		w.cond.Wait()
	}
	w.bytes += j.size
	w.pending[k] = j.ch
	w.wg.Add(1)
	w.mu.Unlock()
	lowly.do(func() { w.write(j) })
}

func (w *writer) write(j *write) {
	var b []byte
	var err error
	ferr := readSafely(func() { b, err = (proto.MarshalOptions{Deterministic: true}).Marshal(j.outs) })
	j.done()
	if ferr == nil && err == nil {
		// Caching is best-effort: a full disk must not fail the run.
		_ = j.c.Put(j.key, b, j.producer)
	}
	w.mu.Lock()
	w.bytes -= j.size
	if w.pending[j.key] == j.ch {
		delete(w.pending, j.key)
	}
	close(j.ch)
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Done()
}

// lowly runs work in order on one OS thread of the lowest priority (nice
// 19), so that plugins and schedulers get the CPU first and the cache's
// writes fill the gaps. Work waits while any run is under way, up to
// writeDelay after it was queued, so that a short run never competes with
// its own cache writes and a long one still has its results written as it
// goes; unless someone waits for the work (hurry). The thread lives as long
// as the process: a Go goroutine that ends locked to its thread ends the
// thread, and a plugin process started from that thread would get its
// parent-death signal.
var lowly worker

const writeDelay = 2 * time.Second

type worker struct {
	once   sync.Once
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []job
	runs   int // runs under way
	urgent int // callers waiting for the work
}

type job struct {
	f  func()
	at time.Time
}

func (l *worker) init() {
	l.once.Do(func() {
		l.cond = sync.NewCond(&l.mu)
		go l.loop()
	})
}

func (l *worker) do(f func()) {
	l.init()
	l.mu.Lock()
	l.queue = append(l.queue, job{f, time.Now()})
	l.mu.Unlock()
	l.cond.Broadcast()
}

// run counts a run under way until the returned func is called.
func (l *worker) run() (end func()) {
	l.init()
	l.mu.Lock()
	l.runs++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.runs--
		l.mu.Unlock()
		l.cond.Broadcast()
	}
}

// hurry makes the work go on at once until the returned func is called.
func (l *worker) hurry() (done func()) {
	l.init()
	l.mu.Lock()
	l.urgent++
	l.mu.Unlock()
	l.cond.Broadcast()
	return func() {
		l.mu.Lock()
		l.urgent--
		l.mu.Unlock()
	}
}

func (l *worker) loop() {
	runtime.LockOSThread() // for good: never unlocked, never ends
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
	for {
		l.mu.Lock()
		for {
			if len(l.queue) == 0 {
				l.cond.Wait()
				continue
			}
			wait := writeDelay - time.Since(l.queue[0].at)
			if l.runs == 0 || l.urgent > 0 || wait <= 0 {
				break
			}
			t := time.AfterFunc(wait, l.cond.Broadcast)
			l.cond.Wait()
			t.Stop()
		}
		j := l.queue[0]
		l.queue[0] = job{}
		l.queue = l.queue[1:]
		l.mu.Unlock()
		j.f()
	}
}

// waitKey returns once no write of k is under way.
func (w *writer) waitKey(k cache.Key) {
	w.mu.Lock()
	ch := w.pending[k]
	w.mu.Unlock()
	if ch != nil {
		defer lowly.hurry()()
		<-ch
	}
}

// Busy counts work under way that the cache's background writes should not
// compete with, beyond the engine's runs themselves: a server recording a
// finished prompt's history and telling its client. Writes that start the
// moment Run returns take the CPU, and the garbage collector's attention,
// from exactly those last steps of a prompt. Call the returned func when the
// work is done.
func (e *Engine) Busy() (done func()) { return lowly.run() }

// Wait blocks until every cache write of finished runs is done. Call it
// before closing the cache or the runner: the writes read outputs the runner
// lent.
func (e *Engine) Wait() {
	defer lowly.hurry()()
	e.writes.wg.Wait()
}

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
