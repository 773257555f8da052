package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/face0/face0/cluster"
)

// sideEffects says whether this machine's node type writes something (a
// saved file): such a node must run once even when its job is delivered
// twice at the same time, which JetStream does after a crash of the NATS
// server.
func (w *Worker) sideEffects(nodeType string) bool {
	for _, d := range w.host.Nodes() {
		if d.Spec.GetType() == nodeType {
			return d.Spec.GetSideEffects()
		}
	}
	return false
}

// claim makes this worker the one that runs a job, unless another live
// worker claimed it already: then the job waits (its result will be there
// when it comes back). A claim of a worker whose heartbeats stopped is
// taken over: that worker died mid-node, and the node must run.
func (w *Worker) claim(ctx context.Context, job string) (bool, error) {
	key := cluster.ClaimKey(job)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := w.bus.Workers.Create(ctx, key, []byte(w.id))
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, err
	}
	e, err := w.bus.Workers.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return w.claim(ctx, job) // deleted meanwhile: try again
	}
	if err != nil {
		return false, err
	}
	holder := string(e.Value())
	if holder == w.id {
		return true, nil
	}
	if w.alive(ctx, holder) {
		return false, nil
	}
	if _, err := w.bus.Workers.Update(ctx, key, []byte(w.id), e.Revision()); err != nil {
		return false, nil // another worker took it over first
	}
	w.logf("job %s: its claim was worker %s's, which is gone; running it here", job, holder)
	return true, nil
}

// alive says whether a worker's last heartbeat is recent, measured against
// this worker's own last heartbeat: both times are the NATS server's, so
// the clocks of the machines need not agree.
func (w *Worker) alive(ctx context.Context, worker string) bool {
	theirs, err := w.bus.Workers.Get(ctx, cluster.WorkerKey(worker))
	if err != nil {
		return !errors.Is(err, jetstream.ErrKeyNotFound) // cannot tell: assume so
	}
	ours, err := w.bus.Workers.Get(ctx, cluster.WorkerKey(w.id))
	if err != nil {
		return true
	}
	return ours.Created().Sub(theirs.Created()) < cluster.BeatAge
}
