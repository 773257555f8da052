package server

import (
	"context"
	"net/http"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// Node specs change while plugins run (a Train node writes a model that the
// samplers then offer), so the server asks the plugins for them again after
// each run and when /object_info is read. Asking can take as long as the
// plugins' Describe deadline (a plugin that hangs), so it always happens in
// the background, one refresh at a time: the queue worker never waits for it,
// /object_info waits at most objectInfoWait and then serves the specs in
// force, and a prompt that fails to validate waits for a fresh refresh (its
// nodes or choices may be the ones the refresh brings) before it is refused.

// objectInfoWait is how long /object_info waits for a refresh: long enough
// for healthy plugins to answer, so that the editor's refresh button shows a
// model written a moment ago.
const objectInfoWait = time.Second

// refreshState is the background refresh; guarded by Server.refreshMu.
type refreshState struct {
	last    time.Time
	running chan struct{} // closed when the refresh in flight ends; nil if none
	again   chan struct{} // a forced refresh asked for while one ran
}

// startRefresh begins a refresh unless one runs, or (not forced) one began
// less than a second ago. It returns a channel closed once the specs reflect
// the plugins as they were at this call.
func (s *Server) startRefresh(force bool) <-chan struct{} {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	r := &s.refreshing
	if r.running != nil {
		if !force {
			return r.running
		}
		// The refresh in flight may have asked before what the caller wants
		// to see happened: one more follows it.
		if r.again == nil {
			r.again = make(chan struct{})
		}
		return r.again
	}
	if !force && time.Since(r.last) < time.Second {
		return alreadyDone
	}
	r.running, r.last = make(chan struct{}), time.Now()
	s.refreshWG.Add(1)
	go s.runRefresh(r.running)
	return r.running
}

var alreadyDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *Server) runRefresh(done chan struct{}) {
	defer s.refreshWG.Done()
	for {
		cat, problems := s.refresher(s.ctx)
		for _, p := range problems {
			s.cfg.log.Printf("node specs: %v", p)
		}
		if cat != nil && len(cat.Nodes()) > 0 {
			s.specs.Store(&specState{catalog: cat, info: buildObjectInfo(cat)})
		}
		s.refreshMu.Lock()
		close(done)
		r := &s.refreshing
		if r.again == nil || s.ctx.Err() != nil {
			if r.again != nil {
				close(r.again)
			}
			r.running, r.again = nil, nil
			s.refreshMu.Unlock()
			return
		}
		done, r.running, r.again, r.last = r.again, r.again, nil, time.Now()
		s.refreshMu.Unlock()
	}
}

// refresh starts a refresh and waits for it, at most until ctx ends.
func (s *Server) refresh(ctx context.Context, force bool) {
	select {
	case <-s.startRefresh(force):
	case <-ctx.Done():
	}
}

// pendingRefresh is the channel of the refresh in flight (or the one that
// follows it), nil when none runs.
func (s *Server) pendingRefresh() <-chan struct{} {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if s.refreshing.again != nil {
		return s.refreshing.again
	}
	if s.refreshing.running != nil {
		return s.refreshing.running
	}
	return nil
}

// compile compiles wf against the specs in force. If that fails, it asks
// the plugins for their specs again (joining a refresh in flight) and waits
// for them, at most until ctx ends or refreshWait has passed, and tries
// again: the workflow may use a model just written or an image just copied
// into the input folder, which the specs in force do not list yet.
func (s *Server) compile(ctx context.Context, wf *workflow.Workflow, targets []string) (*engine.Plan, error) {
	plan, err := s.catalog().Compile(wf, targets)
	if err == nil {
		return plan, nil
	}
	wait, cancel := context.WithTimeout(ctx, refreshWait)
	defer cancel()
	select {
	case <-s.startRefresh(true):
	case <-wait.Done():
		return nil, err
	}
	return s.catalog().Compile(wf, targets)
}

// refreshWait bounds how long a prompt that fails to validate waits for the
// plugins' specs before it is refused: healthy plugins answer in
// milliseconds; a hung one must not hold the request for its whole
// Describe deadline.
const refreshWait = 5 * time.Second

// refreshForRequest refreshes for a request, waiting objectInfoWait at most.
// Requests come often (every client at start-up), so one refresh a second
// serves them all; a request with ?refresh=1 (the editor's R key, a user
// who just copied files into a folder) asks the plugins again whatever the
// last refresh, and waits up to refreshWait for them.
func (s *Server) refreshForRequest(r *http.Request) {
	force := r.URL.Query().Get("refresh") == "1"
	wait := objectInfoWait
	if force {
		wait = refreshWait
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	s.refresh(ctx, force)
}
