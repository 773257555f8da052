package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

// newID returns a random UUID (version 4), ComfyUI's prompt id format.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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
