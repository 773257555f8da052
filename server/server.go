// Package server is face0's web API: ComfyUI's HTTP routes and websocket
// messages over the face0 engine, so that scripts and clients written for
// ComfyUI work unchanged, plus a few face0 routes for the editor.
//
// One worker runs queued prompts in order (WithConcurrency: several, each
// prompt still on one). The queue and the history live in a
// bbolt file of their own, so a queued prompt survives a restart and the
// history keeps the outputs of earlier runs.
package server

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/app"
	pb "github.com/face0/face0/plugins/proto"
)

// DefaultWorkflow is what the editor opens with unless WithDefaultWorkflow says
// otherwise: a copy of examples/workflows/imagefx.json (go:embed cannot reach
// outside this package; a test keeps the copy identical).
//
//go:embed default_workflow.json
var DefaultWorkflow []byte

// Server serves the API. Create it with New, mount Handler on an http.Server,
// and Close it after the http.Server has shut down.
type Server struct {
	cfg     config
	engine  *engine.Engine
	dirs    *pb.Dirs
	store   *store
	hub     *hub
	handler http.Handler
	up      websocket.Upgrader

	// specs is the current catalog and its /object_info rendering; refresh
	// replaces both when plugins report new specs.
	specs      atomic.Pointer[specState]
	refresher  func(context.Context) (*engine.Catalog, []error)
	refreshMu  sync.Mutex
	refreshing refreshState   // see refresh.go
	refreshWG  sync.WaitGroup // the refresh goroutine

	settingsMu sync.Mutex // the user's settings file (startup.go)

	ctx    context.Context // ends at Close
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	pending    []*queuedPrompt  // in run order
	running    []*runningPrompt // in start order
	paused     bool
	wake       chan struct{}
	workerDone chan struct{}
	closeOnce  sync.Once
}

type config struct {
	token        string
	defaultWF    []byte
	editor       fs.FS
	paused       bool
	maxUpload    int64
	maxLossy     int
	maxMust      int
	maxHistory   int
	maxHistBytes int64
	maxAttempts  int
	concurrency  int
	log          *log.Logger
	version      string
	allowOrigins map[string]bool
	allowHosts   map[string]bool
	userDir      string
}

// Option configures a Server.
type Option func(*config)

// WithToken requires "Authorization: Bearer TOKEN" (or ?token=TOKEN on GET
// requests, for browsers loading /ws, /view and the editor) on every route.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithDefaultWorkflow sets what GET /face0/workflow/default returns.
func WithDefaultWorkflow(wf []byte) Option { return func(c *config) { c.defaultWF = wf } }

// WithEditor serves the browser editor's files at /.
func WithEditor(files fs.FS) Option { return func(c *config) { c.editor = files } }

// WithPaused starts the server with its worker paused: prompts queue up but do
// not run until Resume. For tests of the queue and of restarts.
func WithPaused() Option { return func(c *config) { c.paused = true } }

// WithUploadLimit bounds an uploaded image's size in bytes (default 50 MiB).
func WithUploadLimit(n int64) Option { return func(c *config) { c.maxUpload = n } }

// WithClientBuffers bounds each websocket client's queue: lossy frames
// (progress, previews) waiting before older ones are dropped, and must-deliver
// frames waiting before the client is disconnected as too slow.
func WithClientBuffers(lossy, must int) Option {
	return func(c *config) { c.maxLossy, c.maxMust = lossy, must }
}

// WithMaxHistory bounds how many finished prompts the history keeps (default
// 10000, as ComfyUI); the oldest go first.
func WithMaxHistory(n int) Option { return func(c *config) { c.maxHistory = n } }

// DefaultHistoryBytes is the history's default byte bound (see WithHistoryBytes).
const DefaultHistoryBytes = 32 << 20

// WithHistoryBytes bounds the bytes the history keeps (default
// DefaultHistoryBytes; 0 or less: no bound): the entries as stored, that is
// each prompt, its outputs as the nodes reported them and its status
// messages, as JSON. The oldest go first; the newest is always kept.
func WithHistoryBytes(n int64) Option { return func(c *config) { c.maxHistBytes = n } }

// DefaultMaxAttempts is how many runs of a prompt the server may fail to
// survive before it gives up on the prompt (see WithMaxAttempts).
const DefaultMaxAttempts = 3

// WithMaxAttempts sets how many times a queued prompt may start running
// without the server surviving the run (a crash, kill -9, power loss) before
// it is marked failed instead of run again at the next start (default
// DefaultMaxAttempts). A shutdown by signal or Close does not count.
func WithMaxAttempts(n int) Option { return func(c *config) { c.maxAttempts = max(1, n) } }

// WithConcurrency runs up to n queued prompts at once (default 1, in queue
// order, as ComfyUI does): for a server whose nodes run on workers of
// other machines (cluster/dispatch), where one prompt leaves most of them idle.
func WithConcurrency(n int) Option { return func(c *config) { c.concurrency = max(1, n) } }

// runningPrompt is a prompt being run, and how to stop it.
type runningPrompt struct {
	*queuedPrompt
	cancel context.CancelCauseFunc
}

// WithLog sends the server's own messages to w (default stderr).
func WithLog(w io.Writer) Option {
	return func(c *config) { c.log = log.New(w, "face0 serve: ", log.LstdFlags) }
}

// WithVersion is the face0 version /system_stats reports.
func WithVersion(v string) Option { return func(c *config) { c.version = v } }

// WithAllowedOrigins lets pages from these origins ("http://localhost:5173",
// an editor dev server) call the API from a browser. Same-origin pages always may.
func WithAllowedOrigins(origins ...string) Option {
	return func(c *config) {
		for _, o := range origins {
			c.allowOrigins[o] = true
		}
	}
}

// WithAllowedHosts adds names that requests may address this server by (the
// Host header, port ignored) when it has no token, besides localhost, its
// *.localhost names and IP addresses: the name in the listen address, or a
// name the machine has on the network. See Server.hostAllowed.
func WithAllowedHosts(hosts ...string) Option {
	return func(c *config) {
		for _, h := range hosts {
			if h = hostName(h); h != "" {
				c.allowHosts[h] = true
			}
		}
	}
}

// WithUserDir sets the folder of the users' settings and saved files
// (ComfyUI's user folder; default: "user" beside the database).
func WithUserDir(dir string) Option { return func(c *config) { c.userDir = dir } }

// New makes a server over a, keeping its queue and history in dbPath, and
// re-queues whatever was queued or running when a server last stopped. The
// caller keeps ownership of a and closes it after Close.
func New(a *app.App, dbPath string, opts ...Option) (*Server, error) {
	cfg := config{
		defaultWF:    DefaultWorkflow,
		maxUpload:    50 << 20,
		maxLossy:     64,
		maxMust:      4096,
		maxHistory:   10000,
		maxHistBytes: DefaultHistoryBytes,
		maxAttempts:  DefaultMaxAttempts,
		concurrency:  1,
		log:          log.New(os.Stderr, "face0 serve: ", log.LstdFlags),
		version:      "dev",
		allowOrigins: map[string]bool{},
		allowHosts:   map[string]bool{},
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.userDir == "" {
		cfg.userDir = filepath.Join(filepath.Dir(dbPath), "user")
	}
	if a == nil || a.Catalog == nil || a.Engine == nil {
		return nil, errors.New("server: the app is not open (call app.Open first)")
	}
	st, err := openStore(dbPath, storeOptions{maxCount: cfg.maxHistory, maxBytes: cfg.maxHistBytes, logf: cfg.log.Printf})
	if err != nil {
		return nil, err
	}
	queued, unreadable, err := st.loadQueue()
	if err != nil {
		st.close()
		return nil, err
	}
	for _, u := range unreadable {
		// Not run, not lost from sight: it moves to the history as failed.
		reason := fmt.Errorf("the queued prompt is unreadable in %s (%v); it was not run", dbPath, u.Err)
		cfg.log.Printf("prompt %s: %v", u.ID, reason)
		sink := newRunSink(u.ID, func(*frame) {})
		sink.failBeforeRun(reason)
		if err := st.finish(u.ID, sink.historyEntry(&queuedPrompt{ID: u.ID})); err != nil {
			cfg.log.Printf("prompt %s: could not record its history: %v", u.ID, err)
		}
	}
	s := &Server{
		cfg: cfg, engine: a.Engine, dirs: a.Dirs, store: st, hub: newHub(), refresher: a.Refresh,
		pending: queued, paused: cfg.paused, wake: make(chan struct{}, 1), workerDone: make(chan struct{}),
	}
	if s.dirs == nil {
		s.dirs = &pb.Dirs{}
	}
	s.specs.Store(&specState{catalog: a.Catalog, info: buildObjectInfo(a.Catalog)})
	s.up = websocket.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 16 << 10,
		CheckOrigin: func(r *http.Request) bool { return s.originAllowed(r) },
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.handler = s.routes()
	if len(queued) > 0 {
		cfg.log.Printf("re-queued %d prompt(s) left from the last run", len(queued))
	}
	var workers sync.WaitGroup
	for range cfg.concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.worker()
		}()
	}
	go func() {
		workers.Wait()
		close(s.workerDone)
	}()
	return s, nil
}

// Handler is the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// errShutdown cancels a running prompt because the server stops: the prompt
// stays queued and runs again on the next start.
var errShutdown = errors.New("server shutting down")

// errUserInterrupt cancels a running prompt because someone asked to.
var errUserInterrupt = errors.New("interrupted by request")

// Close stops the worker (a running prompt is cancelled but stays queued),
// disconnects the websocket clients and closes the database. Shut the
// http.Server down first so that no request is still using the server.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel(errShutdown)
		<-s.workerDone
		s.refreshWG.Wait()
		s.hub.closeAll()
		err = s.store.close()
	})
	return err
}

// Resume starts a worker paused by WithPaused.
func (s *Server) Resume() {
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	s.poke()
}

func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// queueRemaining counts pending and running prompts, ComfyUI's queue_remaining.
func (s *Server) queueRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) + len(s.running)
}

func (s *Server) broadcastStatus() {
	s.hub.send("", jsonFrame("status", statusData(s.queueRemaining(), ""), false))
}

// push adds a prompt to the in-memory queue in run order.
func (s *Server) push(p *queuedPrompt) {
	s.mu.Lock()
	i := sort.Search(len(s.pending), func(i int) bool { return runsBefore(p, s.pending[i]) })
	s.pending = append(s.pending, nil)
	copy(s.pending[i+1:], s.pending[i:])
	s.pending[i] = p
	s.mu.Unlock()
	s.poke()
}

// next blocks until there is a prompt to run (and the worker is not paused),
// marks it running and returns it; nil when the server closes.
func (s *Server) next() (*queuedPrompt, context.Context) {
	for {
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			return nil, nil
		}
		if !s.paused && len(s.pending) > 0 {
			p := s.pending[0]
			s.pending = s.pending[1:]
			ctx, cancel := context.WithCancelCause(s.ctx)
			s.running = append(s.running, &runningPrompt{p, cancel})
			more := len(s.pending) > 0
			s.mu.Unlock()
			if more {
				s.poke() // another worker may take the next one
			}
			return p, ctx
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
		}
	}
}

func (s *Server) worker() {
	for {
		p, ctx := s.next()
		if p == nil {
			return
		}
		s.execute(ctx, p)
	}
}

// execute runs one prompt and files its history entry. A prompt cut short by
// Close is left in the persisted queue instead, to run again after a restart.
func (s *Server) execute(ctx context.Context, p *queuedPrompt) {
	// The cache's background writes wait until the prompt is over for its
	// client too: its history written and "executing null" sent.
	defer s.engine.Busy()()
	s.broadcastStatus()
	sink := newRunSink(p.ID, func(f *frame) { s.hub.send(p.ClientID, f) })
	attempt, err := s.store.beginAttempt(p.ID)
	if err != nil {
		// Without a count on disk, a prompt that crashes the server would run
		// at every start; it stays queued in the file for a later start.
		s.cfg.log.Printf("prompt %s: not run: cannot record the attempt: %v", p.ID, err)
		s.endRun(p)
		s.broadcastStatus()
		return
	}
	wf, _, err := workflow.Parse(p.Prompt)
	var plan *engine.Plan
	if err == nil {
		plan, err = s.compile(ctx, wf, p.Targets)
	}
	switch {
	case attempt > s.cfg.maxAttempts:
		err := fmt.Errorf("not run again: the server stopped (crashed or was killed) during each of the %d attempts to run this prompt; the server's log from those runs may say why", attempt-1)
		s.cfg.log.Printf("prompt %s: %v", p.ID, err)
		sink.failBeforeRun(err)
	case err != nil:
		sink.failBeforeRun(fmt.Errorf("the queued workflow no longer validates: %w", err))
	default:
		_, _ = s.engine.Run(ctx, plan, engine.RunOptions{PromptID: p.ID, Sink: sink, UIOnly: true})
	}
	if errors.Is(context.Cause(ctx), errShutdown) {
		s.endRun(p)
		// Cut short on purpose: the prompt runs again at the next start, and
		// this attempt does not count against it.
		if err := s.store.undoAttempt(p.ID); err != nil {
			s.cfg.log.Printf("prompt %s: %v", p.ID, err)
		}
		return
	}
	// The history is written before "executing null": ComfyUI clients fetch
	// /history/{id} as soon as they see it. It is written under s.mu, as the
	// prompt leaves queue_running: GET /queue and GET /history never both
	// miss it.
	s.mu.Lock()
	if err := s.store.finish(p.ID, sink.historyEntry(p)); err != nil {
		s.cfg.log.Printf("prompt %s: could not record its history: %v", p.ID, err)
	}
	s.mu.Unlock()
	s.endRun(p)
	s.hub.send(p.ClientID, jsonFrame("executing", map[string]any{"node": nil, "prompt_id": p.ID}, false))
	s.broadcastStatus()
	// A run may have changed what nodes offer (a trained model); the next
	// prompt does not wait for the answer (see refresh.go).
	s.startRefresh(true)
}

// endRun clears a running prompt.
func (s *Server) endRun(p *queuedPrompt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.running {
		if r.queuedPrompt == p {
			r.cancel(nil)
			s.running = append(s.running[:i], s.running[i+1:]...)
			return
		}
	}
}

type specState struct {
	catalog *engine.Catalog
	info    *objectInfo
}

// catalog is the node catalog in force now.
func (s *Server) catalog() *engine.Catalog { return s.specs.Load().catalog }

// interrupt cancels the running prompt (only if it is id, when id is
// given; every running one when several run and no id is given).
func (s *Server) interrupt(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	done := false
	for _, r := range s.running {
		if id == "" || r.ID == id {
			r.cancel(errUserInterrupt)
			done = true
		}
	}
	return done
}
