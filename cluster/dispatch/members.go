package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/face0/face0/cluster"
)

// The workers bucket is followed with a watcher, the fast path. A watcher
// can stall for good after the NATS server is killed (its consumer is gone
// and the stream may have lost its last writes), and every worker would then
// look dead: so a worker whose heartbeats stopped is looked up directly
// before it is dropped, and the watcher is made anew after a reconnection
// and whenever a lookup finds a heartbeat the watcher missed.

// watch follows the workers bucket with a new watcher, taking in what it
// holds now before it returns.
func (r *Runner) watch(ctx context.Context) error {
	w, err := r.bus.Workers.WatchAll(ctx)
	if err != nil {
		return err
	}
	for caughtUp := false; !caughtUp; {
		select {
		case u, ok := <-w.Updates():
			if !ok {
				return errors.New("the watcher of the workers bucket stopped")
			}
			if u == nil {
				caughtUp = true // what the bucket held is taken in
				break
			}
			r.onWorkerKey(u)
		case <-ctx.Done():
			_ = w.Stop()
			return ctx.Err()
		}
	}
	r.mu.Lock()
	old := r.watcher
	r.watcher = w
	r.mu.Unlock()
	if old != nil {
		_ = old.Stop() // watchLoop moves to the new one
	}
	return nil
}

// watchLoop takes in the changes of the workers bucket, from whichever
// watcher is current.
func (r *Runner) watchLoop() {
	defer r.loops.Done()
	for {
		r.mu.Lock()
		w := r.watcher
		r.mu.Unlock()
		select {
		case <-r.stop:
			return
		case u, ok := <-w.Updates():
			if ok {
				if u != nil {
					r.onWorkerKey(u)
				}
				continue
			}
			// Stopped: replaced, or to be replaced soon.
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// checkWorkers drops workers that missed their heartbeats. Heartbeats are
// judged only while this server has been connected for long enough: during
// a NATS restart nobody's heartbeats arrive, and nobody is dead for that.
func (r *Runner) checkWorkers() {
	now := time.Now()
	r.mu.Lock()
	if !r.bus.NC.IsConnected() {
		r.since = time.Time{}
		r.mu.Unlock()
		return
	}
	if r.since.IsZero() {
		// Back after a reconnection: the watcher may not be.
		r.since, r.rewatchAt = now, now.Add(time.Second)
	}
	rewatch := !r.rewatchAt.IsZero() && now.After(r.rewatchAt)
	var suspects []string
	if now.Sub(r.since) >= r.o.DeadAfter {
		for id, m := range r.workers {
			if now.Sub(m.seen) > r.o.DeadAfter {
				suspects = append(suspects, id)
			}
		}
	}
	r.mu.Unlock()

	if rewatch {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.watch(ctx)
		cancel()
		r.mu.Lock()
		if err == nil {
			r.rewatchAt = time.Time{}
		} else {
			r.rewatchAt = time.Now().Add(time.Second)
		}
		r.mu.Unlock()
	}
	for _, id := range suspects {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		e, err := r.bus.Workers.Get(ctx, cluster.WorkerKey(id))
		cancel()
		r.mu.Lock()
		m := r.workers[id]
		switch {
		case m == nil || time.Since(m.seen) <= r.o.DeadAfter:
			// Gone already, or heard from meanwhile.
		case err == nil && e.Revision() != m.rev:
			// A heartbeat the watcher did not bring: alive, and the
			// watcher is stale.
			m.seen, m.rev = time.Now(), e.Revision()
			if r.rewatchAt.IsZero() {
				r.rewatchAt = time.Now()
			}
		case err == nil || errors.Is(err, jetstream.ErrKeyNotFound):
			delete(r.workers, id)
			r.logf("worker %s (%s) is gone: no heartbeat for %s; its nodes go to other workers", m.beat.Name, id, time.Since(m.seen).Round(time.Millisecond))
		}
		// Another error: NATS cannot say now; judged again next time.
		r.mu.Unlock()
	}
}
