package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/cluster"
	pb "github.com/face0/face0/plugins/proto"
)

// handle runs one job and acks it once its result is stored.
func (w *Worker) handle(msg jetstream.Msg) {
	h := msg.Headers()
	job, disp := h.Get(cluster.HdrJob), h.Get(cluster.HdrDispatcher)
	if job == "" || disp == "" {
		w.logf("a message on %s is no face0 job; dropped", msg.Subject())
		_ = msg.Term()
		return
	}
	delivery := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivery = meta.NumDelivered
	}
	if w.o.Verbose {
		w.logf("job %s: node %s, delivery %d", job, h.Get(cluster.HdrNode), delivery)
	}
	// At least once: a job whose result is there already ran elsewhere (a
	// redelivery after a NATS restart, or after this worker's ack was lost).
	if w.hasResult(disp, job) {
		w.dupes.Add(1)
		_ = msg.Ack()
		return
	}
	// A node with side effects runs on one worker at a time: a second
	// delivery while the first runs comes back after the ack wait, and
	// finds the result then.
	claimed := w.sideEffects(nodeType(h.Get(cluster.HdrNode)))
	if claimed {
		ok, err := w.claim(context.Background(), job)
		switch {
		case err != nil:
			w.logf("job %s: cannot claim it (%v); it comes back later", job, err)
		case !ok:
			w.waited.Add(1)
			w.logf("job %s: another worker runs it; it comes back later", job)
		}
		if !ok {
			_ = msg.NakWithDelay(w.o.AckWait)
			return
		}
	}
	w.busy.Add(1)
	defer w.busy.Add(-1)

	ctx, cancel := context.WithCancelCause(w.runCtx)
	defer cancel(nil)
	defer w.track(cancel, claimed)()
	sub, err := w.bus.NC.Subscribe(cluster.CancelSubject(job), func(*nats.Msg) { cancel(errCancelled) })
	if err == nil {
		defer sub.Unsubscribe()
	}
	// Heartbeats hold the job for as long as the node runs.
	stopBeats := make(chan struct{})
	defer close(stopBeats)
	go func() {
		t := time.NewTicker(w.o.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stopBeats:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()

	outs, events, runErr := w.run(ctx, msg, disp, job, delivery)
	switch {
	case errors.Is(context.Cause(ctx), errCutOff):
		// No ack nor nak reaches NATS now; the job is another worker's.
		w.dropped.Add(1)
		w.logf("job %s: node %s stopped: %v", job, h.Get(cluster.HdrNode), errCutOff)
		if outs != nil {
			w.host.Release(outs.GetValues())
		}
		return
	case isGone(ctx):
		w.cancelled.Add(1)
		_ = msg.Term()
		return
	case w.runCtx.Err() != nil:
		// Aborted: another worker runs it from the start, now.
		_ = msg.Nak()
		return
	}
	w.ran.Add(1)
	res := nats.NewMsg(cluster.ResultSubject(disp, job))
	res.Header.Set(cluster.HdrJob, job)
	res.Header.Set(cluster.HdrWorker, w.o.Name)
	res.Header.Set(cluster.HdrDelivery, strconv.FormatUint(delivery, 10))
	res.Header.Set(cluster.HdrEvents, strconv.FormatInt(events, 10))
	if runErr == nil {
		res.Data, runErr = w.encodeOutputs(ctx, outs)
	}
	if outs != nil {
		w.host.Release(outs.GetValues())
	}
	if runErr != nil {
		w.failed.Add(1)
		res.Header.Set(cluster.HdrError, runErr.Error())
		res.Data = nil
		if errors.Is(runErr, cluster.ErrObjectGone) {
			res.Header.Set(cluster.HdrErrorKind, cluster.KindObjectGone)
		}
	}
	if len(res.Data) > cluster.MaxMessage {
		name, err := w.bus.Objects.PutBody(ctx, res.Data)
		if err != nil {
			_ = msg.Nak()
			return
		}
		res.Data = nil
		res.Header.Set(cluster.HdrBody, name)
	}
	// The events went out first: the server has them before the result.
	_ = w.bus.NC.Flush()
	if !w.publishResult(res, job) {
		_ = msg.Nak()
		return
	}
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	// A lost ack means a redelivery, which finds the result and acks.
	_ = msg.DoubleAck(actx)
}

// run decodes the job, fetches its tensors and runs the node, forwarding
// its events; it returns how many events went out.
func (w *Worker) run(ctx context.Context, msg jetstream.Msg, disp, job string, delivery uint64) (*pb.Outputs, int64, error) {
	var sent atomic.Int64
	subject := cluster.EventSubject(disp, job)
	emit := func(ev *pb.ExecuteEvent) {
		data, err := proto.Marshal(ev)
		if err != nil || len(data) > cluster.MaxMessage {
			return // a preview too large for a message: the next one may fit
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(cluster.HdrWorker, w.o.Name)
		m.Header.Set(cluster.HdrDelivery, strconv.FormatUint(delivery, 10))
		if w.bus.NC.PublishMsg(m) == nil {
			sent.Add(1)
		}
	}
	where := fmt.Sprintf("runs on worker %s", w.o.Name)
	if delivery > 1 {
		where += fmt.Sprintf(" (delivery %d: an earlier worker did not finish it)", delivery)
	}
	emit(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Log{Log: &pb.Log{Level: pb.Log_INFO, Message: where}}})

	body := msg.Data()
	if name := msg.Headers().Get(cluster.HdrBody); name != "" {
		b, err := w.bus.Objects.Get(ctx, name)
		if err != nil {
			return nil, sent.Load(), fmt.Errorf("worker %s: the job's body: %w", w.o.Name, err)
		}
		body = b
	}
	req := &pb.ExecuteRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, sent.Load(), fmt.Errorf("worker %s: the job cannot be read: %w", w.o.Name, err)
	}
	if err := w.bus.Objects.Receive(ctx, req.Inputs); err != nil {
		return nil, sent.Load(), fmt.Errorf("worker %s: an input: %w", w.o.Name, err)
	}
	req.Dirs = w.o.Dirs // this machine's folders, not the server's
	outs, err := w.host.Execute(ctx, req, emit)
	return outs, sent.Load(), err
}

// encodeOutputs puts the output tensors in the object store and marshals
// the rest. The outputs may map a plugin's shared memory, which the plugin
// could cut short: that fails the node, not the worker.
func (w *Worker) encodeOutputs(ctx context.Context, outs *pb.Outputs) (data []byte, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the node's outputs: %v", r)
		}
	}()
	values, err := w.bus.Objects.Send(ctx, outs.GetValues())
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&pb.Outputs{Values: values, Ui: outs.GetUi()})
}

// publishResult stores the result, with the job id as message id so that
// JetStream keeps only the first of two runs. It tries for as long as NATS
// is away (a restart), up to ten minutes.
func (w *Worker) publishResult(res *nats.Msg, job string) bool {
	deadline := time.Now().Add(10 * time.Minute)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := w.bus.JS.PublishMsg(ctx, res, jetstream.WithMsgID(job))
		cancel()
		if err == nil {
			return true
		}
		if w.bus.NC.IsClosed() || w.runCtx.Err() != nil {
			return false // the worker is going away (aborted); so is the job's ack
		}
		if wait == 100*time.Millisecond {
			w.logf("storing the result of job %s: %v; trying again", job, err)
		}
		if time.Now().After(deadline) {
			w.logf("could not store the result of job %s: %v; it will run again", job, err)
			return false
		}
		time.Sleep(wait)
	}
}

// hasResult reports whether the job's result is already stored.
func (w *Worker) hasResult(disp, job string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.bus.Results.GetLastMsgForSubject(ctx, cluster.ResultSubject(disp, job))
	return err == nil
}

// answerFingerprint computes a node's fingerprint for a server that lacks
// the node or its model: the machine that runs a node says what it depends on.
func (w *Worker) answerFingerprint(m *nats.Msg) {
	req := &pb.FingerprintRequest{}
	w.answer(m, req, func(ctx context.Context) ([]byte, error) {
		req.Dirs = w.o.Dirs
		return w.host.Fingerprint(ctx, req)
	})
}

// answerVerify checks a cached result's side effects on this machine.
func (w *Worker) answerVerify(m *nats.Msg) {
	req := &pb.VerifyRequest{}
	w.answer(m, req, func(ctx context.Context) ([]byte, error) {
		req.Dirs = w.o.Dirs
		resp, err := w.host.Verify(ctx, req)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(resp)
	})
}

// answer replies to a server's request about a node on this machine: m's
// data is read into req, call answers it within two minutes, and an error
// (unreadable request or failed call) goes back in the HdrRPCError header.
func (w *Worker) answer(m *nats.Msg, req proto.Message, call func(context.Context) ([]byte, error)) {
	reply := nats.NewMsg(m.Reply)
	if err := proto.Unmarshal(m.Data, req); err != nil {
		reply.Header.Set(cluster.HdrRPCError, err.Error())
	} else {
		ctx, cancel := context.WithTimeout(w.runCtx, 2*time.Minute)
		data, err := call(ctx)
		cancel()
		if err != nil {
			reply.Header.Set(cluster.HdrRPCError, err.Error())
		}
		reply.Data = data
	}
	_ = m.RespondMsg(reply)
}

// nodeType is the type in a job's node header ("Type id").
func nodeType(hdr string) string {
	t, _, _ := strings.Cut(hdr, " ")
	return t
}
