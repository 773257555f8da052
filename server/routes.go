package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := map[string]http.HandlerFunc{
		"GET /prompt":            s.getPrompt,
		"POST /prompt":           s.postPrompt,
		"GET /queue":             gzipJSON(s.getQueue),
		"POST /queue":            s.postQueue,
		"GET /history":           gzipJSON(s.getHistory),
		"GET /history/{id}":      gzipJSON(s.getHistoryOne),
		"POST /history":          s.postHistory,
		"GET /object_info":       s.getObjectInfo,
		"GET /object_info/{cls}": s.getObjectInfoOne,
		"GET /view":              s.getView,
		"POST /upload/image":     s.postUpload,
		"POST /interrupt":        s.postInterrupt,
		"GET /system_stats":      s.getSystemStats,
		"GET /ws":                s.getWS,
		"GET /face0/workflow/default": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(s.cfg.defaultWF)
		},
		"GET /face0/types":        func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.catalog().Types()) },
		"POST /face0/queue/front": s.postQueueFront,
	}
	for pattern, h := range s.startupRoutes() {
		api[pattern] = h
	}
	for pattern, h := range api {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(pattern, h)
		// The current ComfyUI frontend calls the same routes under /api.
		mux.HandleFunc(method+" /api"+path, h)
	}
	mux.Handle("GET /", s.editorHandler())
	return s.guard(mux)
}

// guard applies what every route needs: the token, and refusing cross-site
// requests that change state (a page on another site must not be able to
// queue prompts on a server listening on localhost).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		if s.cfg.token == "" && !s.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, "host_not_allowed",
				fmt.Sprintf("this server answers requests addressed to localhost, its IP addresses or its allowed names, not to %q: start it with --allow-host %s if that name is this machine's, or give it a --token", r.Host, hostName(r.Host)), nil)
			return
		}
		if s.cfg.token != "" {
			ok, fromQuery := s.authorized(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="face0"`)
				writeError(w, http.StatusUnauthorized, "unauthorized",
					"this server needs its token: send the header \"Authorization: Bearer TOKEN\" (browsers: open the page with ?token=TOKEN once)", nil)
				return
			}
			if fromQuery {
				// Lets the browser load the editor's assets and open /ws after
				// one visit with ?token=; SameSite keeps other sites from using it.
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.cfg.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.originAllowed(r) {
			writeError(w, http.StatusForbidden, "cross_origin",
				fmt.Sprintf("requests from the page at %s are not allowed; start the server with that origin allowed, or call the API from the same origin", r.Header.Get("Origin")), nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

const tokenCookie = "face0_token"

// authorized checks the bearer header, the cookie, or (on GET, since browsers
// cannot set headers on websockets and <img> tags) the token query parameter.
func (s *Server) authorized(r *http.Request) (ok, fromQuery bool) {
	want := []byte(s.cfg.token)
	eq := func(got string) bool { return subtle.ConstantTimeCompare([]byte(got), want) == 1 }
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		return strings.EqualFold(scheme, "Bearer") && eq(strings.TrimSpace(tok)), false
	}
	if c, err := r.Cookie(tokenCookie); err == nil && eq(c.Value) {
		return true, false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if q := r.URL.Query().Get("token"); q != "" && eq(q) {
			return true, true
		}
	}
	return false, false
}

// hostAllowed guards a server without a token against DNS rebinding: a page
// on evil.example whose name the attacker re-points at 127.0.0.1 talks to
// this server as a same-origin page (its Origin matches its Host, so the
// cross-origin check lets it through), but its requests still carry Host
// evil.example. Only names that are this machine are accepted: localhost and
// *.localhost (browsers resolve those to loopback themselves), IP literals
// (a rebinding needs a name) and the names given with WithAllowedHosts. With a
// token the Host is not checked: the token is what such a page lacks.
func (s *Server) hostAllowed(host string) bool {
	h := hostName(host)
	if h == "" || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true // HTTP/1.0 requests may have no Host; browsers always send one
	}
	if net.ParseIP(strings.SplitN(h, "%", 2)[0]) != nil {
		return true
	}
	return s.cfg.allowHosts[h]
}

// hostName is the lower-case name in a Host header or listen address,
// without port, brackets or trailing dot.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// originAllowed accepts requests without an Origin (scripts, curl), from the
// same host, or from an allowed origin.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || s.cfg.allowOrigins[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeError answers in ComfyUI's error shape:
// {"error": {"type","message","details","extra_info"}, "node_errors": {...}}.
func writeError(w http.ResponseWriter, code int, typ, msg string, nodeErrors map[string]any) {
	writeErrorDetails(w, code, typ, msg, "", nil, nodeErrors)
}

func writeErrorDetails(w http.ResponseWriter, code int, typ, msg, details string, extra map[string]any, nodeErrors map[string]any) {
	if nodeErrors == nil {
		nodeErrors = map[string]any{}
	}
	if extra == nil {
		extra = map[string]any{}
	}
	writeJSON(w, code, map[string]any{
		"error":       map[string]any{"type": typ, "message": msg, "details": details, "extra_info": extra},
		"node_errors": nodeErrors,
	})
}

// readJSON decodes a small JSON body into v, answering 400/413 itself on failure.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body is over %d bytes", limit), nil)
		} else {
			writeError(w, http.StatusBadRequest, "bad_body", "could not read the request body: "+err.Error(), nil)
		}
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "the request body is not the expected JSON: "+err.Error(), nil)
		return false
	}
	return true
}

var promptIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// newID returns a random UUID (version 4), ComfyUI's prompt id format.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (s *Server) getPrompt(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"exec_info": map[string]any{"queue_remaining": s.queueRemaining()}})
}

type promptRequest struct {
	Prompt    json.RawMessage `json:"prompt"`
	ClientID  string          `json:"client_id"`
	ExtraData map[string]any  `json:"extra_data"`
	Front     bool            `json:"front"`
	Number    *float64        `json:"number"`
	PromptID  string          `json:"prompt_id"`
	Targets   []string        `json:"partial_execution_targets"`
}

func (s *Server) postPrompt(w http.ResponseWriter, r *http.Request) {
	var req promptRequest
	if !readJSON(w, r, workflow.MaxSize+1<<20, &req) {
		return
	}
	if p := bytes.TrimSpace(req.Prompt); len(p) == 0 || bytes.Equal(p, []byte("null")) {
		writeError(w, http.StatusBadRequest, "no_prompt", `no prompt given: send {"prompt": {...}} with a ComfyUI API prompt or a face0 workflow`, nil)
		return
	}
	wf, format, err := workflow.Parse(req.Prompt)
	if err != nil {
		var se *workflow.SchemaError
		extra := map[string]any{}
		if errors.As(err, &se) {
			extra["causes"] = se.Causes
		}
		writeErrorDetails(w, http.StatusBadRequest, "invalid_prompt", "Invalid prompt: "+err.Error(), err.Error(), extra, nil)
		return
	}
	outputs := s.outputsToExecute(wf, req.Targets)
	// An API prompt without an output node is refused as ComfyUI refuses
	// it; so is a face0 workflow whose output nodes are all muted or
	// bypassed. A face0 workflow without any output node runs every node
	// nothing reads from, as `face0 run` does here and the engine does.
	if len(outputs) == 0 && s.typesKnown(wf) && (format == workflow.ComfyUI || s.hasOutputNode(wf)) {
		// ComfyUI's answer, node_errors an empty list.
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": map[string]any{"type": engine.KindNoOutputs, "message": "Prompt has no outputs",
				"details":    "the workflow has no output node that runs (SaveImage, PreviewImage, ...): add one, or name the nodes to run in partial_execution_targets (face0 run --outputs)",
				"extra_info": map[string]any{}},
			"node_errors": []any{},
		})
		return
	}
	if _, err := s.compile(r.Context(), wf, req.Targets); err != nil {
		var ve *engine.ValidationError
		if !errors.As(err, &ve) {
			writeErrorDetails(w, http.StatusBadRequest, "invalid_prompt", "Invalid prompt: "+err.Error(), err.Error(), nil, nil)
			return
		}
		nodeErrs := ve.NodeErrors()
		dependentOutputs(nodeErrs, wf, outputs)
		typ, msg := "prompt_outputs_failed_validation", "Prompt outputs failed validation"
		if len(nodeErrs) == 0 && len(ve.Problems) > 0 {
			typ, msg = ve.Problems[0].Kind, ve.Problems[0].Message
		}
		writeErrorDetails(w, http.StatusBadRequest, typ, msg, ve.Error(), nil, nodeErrs)
		return
	}
	id := req.PromptID
	if id == "" {
		id = newID()
	} else if !promptIDRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "invalid_prompt_id", "prompt_id must be 1-128 letters, digits, '_', '.', ':' or '-' (or leave it out)", nil)
		return
	}
	extra := req.ExtraData
	if extra == nil {
		extra = map[string]any{}
	}
	clientID := req.ClientID
	if clientID == "" {
		clientID, _ = extra["client_id"].(string)
	}
	if clientID != "" {
		extra["client_id"] = clientID
	}
	p := &queuedPrompt{
		ID: id, Prompt: append(json.RawMessage(nil), req.Prompt...), ExtraData: extra, ClientID: clientID,
		Outputs: outputs, Targets: req.Targets, Queued: time.Now(),
	}
	if err := s.store.enqueue(p, req.Number, req.Front); err != nil {
		if errors.Is(err, errDuplicateID) {
			writeError(w, http.StatusBadRequest, "duplicate_prompt_id", err.Error(), nil)
			return
		}
		writeError(w, http.StatusInternalServerError, "queue_failed", "could not store the prompt: "+err.Error(), nil)
		return
	}
	s.push(p)
	s.broadcastStatus()
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": p.Number, "node_errors": map[string]any{}})
}

// outputsToExecute is what ComfyUI lists in a queue item: the requested
// targets, else the workflow's output nodes.
func (s *Server) outputsToExecute(wf *workflow.Workflow, targets []string) []string {
	if len(targets) > 0 {
		return targets
	}
	out := []string{}
	for _, n := range wf.Nodes {
		if d, ok := s.catalog().Lookup(n.Type); ok && d.Spec.OutputNode && n.Mode == "" {
			out = append(out, n.ID)
		}
	}
	return out
}

// hasOutputNode reports whether the workflow has an output node (SaveImage
// and the like), running or not.
func (s *Server) hasOutputNode(wf *workflow.Workflow) bool {
	for _, n := range wf.Nodes {
		if d, ok := s.catalog().Lookup(n.Type); ok && d.Spec.OutputNode {
			return true
		}
	}
	return false
}

// typesKnown reports whether every node that runs is of a known type (else
// the unknown types are the problem to report, not a lack of outputs).
func (s *Server) typesKnown(wf *workflow.Workflow) bool {
	for _, n := range wf.Nodes {
		if _, ok := s.catalog().Lookup(n.Type); !ok && n.Mode != workflow.ModeMuted {
			return false
		}
	}
	return true
}

// dependentOutputs fills each node error's dependent_outputs, as ComfyUI
// does: the output nodes the failing node feeds, directly or not (itself,
// when it is one).
func dependentOutputs(nodeErrs map[string]any, wf *workflow.Workflow, outputs []string) {
	readers := map[string][]string{} // node -> nodes reading from it
	for _, n := range wf.Nodes {
		for _, in := range n.Inputs {
			if in.Link != nil {
				readers[in.Link.Node] = append(readers[in.Link.Node], n.ID)
			}
		}
	}
	isOutput := map[string]bool{}
	for _, o := range outputs {
		isOutput[o] = true
	}
	for id, e := range nodeErrs {
		entry, ok := e.(map[string]any)
		if !ok {
			continue
		}
		deps := []string{}
		seen := map[string]bool{id: true}
		for stack := []string{id}; len(stack) > 0; {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if isOutput[n] {
				deps = append(deps, n)
			}
			for _, r := range readers[n] {
				if !seen[r] {
					seen[r] = true
					stack = append(stack, r)
				}
			}
		}
		sort.Strings(deps)
		entry["dependent_outputs"] = deps
	}
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	running := [][]any{}
	for _, r := range s.running {
		running = append(running, r.item())
	}
	pending := make([][]any, 0, len(s.pending))
	for _, p := range s.pending {
		pending = append(pending, p.item())
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"queue_running": running, "queue_pending": pending})
}

type clearOrDelete struct {
	Clear  bool     `json:"clear"`
	Delete []string `json:"delete"`
}

// postQueue removes pending prompts: {"clear": true} or {"delete": [ids]}.
// The running prompt is not touched; POST /interrupt stops it.
func (s *Server) postQueue(w http.ResponseWriter, r *http.Request) {
	var req clearOrDelete
	if !readJSON(w, r, 1<<20, &req) {
		return
	}
	del := map[string]bool{}
	for _, id := range req.Delete {
		del[id] = true
	}
	s.mu.Lock()
	var removed []string
	kept := s.pending[:0]
	for _, p := range s.pending {
		if req.Clear || del[p.ID] {
			removed = append(removed, p.ID)
		} else {
			kept = append(kept, p)
		}
	}
	s.pending = kept
	s.mu.Unlock()
	if err := s.store.dequeue(removed...); err != nil {
		writeError(w, http.StatusInternalServerError, "queue_failed", "could not update the stored queue: "+err.Error(), nil)
		return
	}
	if len(removed) > 0 {
		s.broadcastStatus()
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": nonNil(removed)})
}

// postQueueFront moves a pending prompt to the front of the queue:
// {"prompt_id": id}. ComfyUI takes "front" only when a prompt is queued;
// the editor's queue panel moves one that waits already.
func (s *Server) postQueueFront(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PromptID string `json:"prompt_id"`
	}
	if !readJSON(w, r, 1<<16, &req) {
		return
	}
	s.mu.Lock()
	i := slices.IndexFunc(s.pending, func(p *queuedPrompt) bool { return p.ID == req.PromptID })
	if i < 0 {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "not_pending", fmt.Sprintf("prompt %q is not waiting in the queue (it may be running or done already)", req.PromptID), nil)
		return
	}
	p := s.pending[i]
	number := p.Number
	if i > 0 {
		number = s.pending[0].Number - 1
	}
	// Stored first: a restart keeps the new order, and a failed write
	// leaves the old one in place everywhere.
	if err := s.store.renumber(p.ID, number); err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusInternalServerError, "queue_failed", "could not update the stored queue: "+err.Error(), nil)
		return
	}
	p.Number = number
	s.pending = append(s.pending[:i], s.pending[i+1:]...)
	s.pending = append([]*queuedPrompt{p}, s.pending...)
	s.mu.Unlock()
	s.broadcastStatus()
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": p.ID, "number": number})
}

// getHistory lists the history oldest first, as ComfyUI does: all of it, the
// newest max_items, or max_items from offset (counted from the oldest). The
// answer is streamed in batches, each read in its own short transaction, so a
// long history costs neither a buffer of its size nor a long read
// transaction. An entry that no longer decodes is left out (and logged)
// rather than failing the whole list.
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	intParam := func(name string, def int) (int, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_"+name, name+" must be a non-negative integer", nil)
			return 0, false
		}
		return n, true
	}
	maxItems, ok := intParam("max_items", -1)
	if !ok {
		return
	}
	offset, ok := intParam("offset", -1)
	if !ok {
		return
	}
	remaining := maxItems
	if maxItems < 0 {
		remaining, maxItems = math.MaxInt, 0
	}
	start, err := s.store.historyStart(maxItems, offset)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "history_failed", err.Error(), nil)
		return
	}
	const batchItems, batchBytes = 256, 1 << 20
	var skipped []string
	batch := func(from uint64) ([]historyItem, uint64, error) {
		if remaining <= 0 {
			return nil, 0, nil
		}
		items, next, bad, err := s.store.historyBatch(from, min(batchItems, remaining), batchBytes)
		skipped = append(skipped, bad...)
		remaining -= len(items)
		return items, next, err
	}
	items, next, err := batch(start)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "history_failed", err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteByte('{')
	first := true
	for {
		for _, it := range items {
			if !first {
				bw.WriteByte(',')
			}
			first = false
			k, _ := json.Marshal(it.ID)
			bw.Write(k)
			bw.WriteByte(':')
			bw.Write(it.Entry)
		}
		if next == 0 || remaining <= 0 {
			break
		}
		if items, next, err = batch(next); err != nil {
			// The answer has begun; cutting the connection is the only
			// honest way left to say it is incomplete.
			s.cfg.log.Printf("GET /history: %v", err)
			panic(http.ErrAbortHandler)
		}
	}
	bw.WriteByte('}')
	_ = bw.Flush()
	if len(skipped) > 0 {
		s.cfg.log.Printf("GET /history: left out %d unreadable entr(ies) (%s); delete them with POST /history {\"delete\": [...]}",
			len(skipped), strings.Join(skipped, ", "))
	}
}

// getHistoryOne answers {} for an unknown (or still queued) id, as ComfyUI
// does: clients poll it until the entry appears.
func (s *Server) getHistoryOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := s.store.historyOne(id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "history_failed", err.Error(), nil)
		return
	}
	if e == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{id: e})
}

func (s *Server) postHistory(w http.ResponseWriter, r *http.Request) {
	var req clearOrDelete
	if !readJSON(w, r, 1<<20, &req) {
		return
	}
	if !req.Clear && len(req.Delete) == 0 {
		writeError(w, http.StatusBadRequest, "nothing_to_do", `send {"clear": true} or {"delete": ["prompt id", ...]}`, nil)
		return
	}
	if err := s.store.deleteHistory(req.Delete, req.Clear); err != nil {
		writeError(w, http.StatusInternalServerError, "history_failed", err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) postInterrupt(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PromptID string `json:"prompt_id"`
	}
	if !readJSON(w, r, 1<<16, &req) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"interrupted": s.interrupt(req.PromptID)})
}

func (s *Server) getWS(w http.ResponseWriter, r *http.Request) {
	sid := r.URL.Query().Get("clientId")
	if sid != "" && !promptIDRE.MatchString(sid) {
		writeError(w, http.StatusBadRequest, "bad_client_id", "clientId must be 1-128 letters, digits, '_', '.', ':' or '-'", nil)
		return
	}
	if sid == "" {
		sid = newID()
	}
	conn, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered already
	}
	c := &client{sid: sid, conn: conn, out: newOutbox(s.cfg.maxLossy, s.cfg.maxMust), done: make(chan struct{})}
	// The greeting goes first, before the client can receive anything else.
	c.out.push(jsonFrame("status", statusData(s.queueRemaining(), sid), false))
	if !s.hub.add(c) {
		c.close(1001, "server shutting down")
		return
	}
	go c.writeLoop()
	c.readLoop()
	s.hub.remove(c)
	c.close(1000, "")
}

// IsLoopback reports whether addr (host:port) only listens on this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
