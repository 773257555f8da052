package server

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// A frame is one websocket message, encoded once and shared by every client it
// goes to: fan-out to hundreds of clients costs a pointer per client, not an
// encoding per client.
type frame struct {
	pm *websocket.PreparedMessage
	// lossy frames (progress, previews, logs) may be dropped for a client that
	// cannot keep up; the others (executing, executed, the end of a run) never
	// are, because ComfyUI clients wait on them.
	lossy bool
	// raw is the payload, kept for tests and logs.
	raw []byte
	// withMeta, for previews, is the PREVIEW_IMAGE_WITH_METADATA form that
	// names the node; sent instead of pm to clients that announced support.
	withMeta *websocket.PreparedMessage
}

// outbox is one client's queue. Publishing never blocks: push appends under a
// mutex and pokes the writer. The queue keeps delivery order, and bounds
// memory two ways:
//
//   - lossy frames beyond maxLossy waiting frames evict the oldest waiting
//     lossy frame (a newer progress value or preview supersedes an older one);
//   - must-deliver frames beyond maxMust mean the client has stopped reading
//     altogether; rather than grow without bound or silently lose an
//     "executing null", the client is disconnected (it can reconnect and read
//     /history, which has the complete record).
//
// The writer takes the whole waiting batch at once, so at most one batch
// (bounded by the same limits) is in flight besides what waits.
type outbox struct {
	mu       sync.Mutex
	items    []outItem
	base     uint64   // position of items[0] in the stream of pushes
	lossyAt  []uint64 // stream positions of waiting lossy frames, oldest first
	lossyN   int
	mustN    int
	maxLossy int
	maxMust  int
	overflow bool
	closed   bool
	dropped  atomic.Int64
	notify   chan struct{}
}

type outItem struct {
	f       *frame
	dropped bool
}

func newOutbox(maxLossy, maxMust int) *outbox {
	return &outbox{maxLossy: max(1, maxLossy), maxMust: max(1, maxMust), notify: make(chan struct{}, 1)}
}

// push queues f. It returns false when the client is closed or has just
// overflowed its must-deliver bound (the writer then disconnects it).
func (q *outbox) push(f *frame) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.overflow {
		return false
	}
	pos := q.base + uint64(len(q.items))
	if f.lossy {
		if q.lossyN >= q.maxLossy {
			q.evictOldestLossy()
		}
		q.lossyAt = append(q.lossyAt, pos)
		q.lossyN++
	} else {
		if q.mustN >= q.maxMust {
			q.overflow = true
			q.poke()
			return false
		}
		q.mustN++
	}
	q.items = append(q.items, outItem{f: f})
	q.poke()
	return true
}

func (q *outbox) evictOldestLossy() {
	for len(q.lossyAt) > 0 {
		pos := q.lossyAt[0]
		q.lossyAt = q.lossyAt[1:]
		if pos < q.base {
			continue // already taken by the writer
		}
		it := &q.items[pos-q.base]
		if it.dropped {
			continue
		}
		it.dropped, it.f = true, nil
		q.lossyN--
		q.dropped.Add(1)
		return
	}
}

func (q *outbox) poke() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take hands the writer everything waiting, in order, without dropped frames.
// overflow reports that the client must be disconnected.
func (q *outbox) take() (batch []*frame, overflow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if !it.dropped {
			batch = append(batch, it.f)
		}
	}
	q.base += uint64(len(q.items))
	q.items = q.items[:0:0]
	q.lossyAt = q.lossyAt[:0]
	q.lossyN, q.mustN = 0, 0
	return batch, q.overflow
}

func (q *outbox) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
	q.poke()
}

// client is one websocket connection.
type client struct {
	sid  string
	conn *websocket.Conn
	out  *outbox
	done chan struct{}
	once sync.Once
	// previewMeta is set when the client sent ComfyUI's feature flags with
	// supports_preview_metadata: it then gets previews that name their node.
	previewMeta atomic.Bool
}

// hub knows the connected clients and routes frames to them.
type hub struct {
	mu      sync.RWMutex
	clients map[*client]struct{}
	closed  bool
}

func newHub() *hub { return &hub{clients: map[*client]struct{}{}} }

func (h *hub) add(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.clients[c] = struct{}{}
	return true
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// send delivers f to the clients whose sid is sid, or to all with sid == "".
// That is ComfyUI's routing: a prompt's execution messages go to the client
// that submitted it, status and prompts without a client_id go to everyone.
func (h *hub) send(sid string, f *frame) {
	if f == nil {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if sid == "" || c.sid == sid {
			c.out.push(f)
		}
	}
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// closeAll disconnects everyone and refuses new clients (server shutdown).
func (h *hub) closeAll() {
	h.mu.Lock()
	h.closed = true
	cs := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.close(websocket.CloseGoingAway, "server shutting down")
	}
}

const (
	writeWait  = 10 * time.Second
	pongWait   = 60 * time.Second
	pingPeriod = 25 * time.Second
)

func (c *client) close(code int, reason string) {
	c.once.Do(func() {
		c.out.close()
		close(c.done)
		msg := websocket.FormatCloseMessage(code, reason)
		_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = c.conn.Close()
	})
}

// writeLoop is the only writer of c.conn's data frames (gorilla allows one
// concurrent writer). A write that takes longer than writeWait ends the client.
func (c *client) writeLoop() {
	ping := time.NewTicker(pingPeriod)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				c.close(websocket.CloseGoingAway, "ping failed")
				return
			}
			continue
		case <-c.out.notify:
		}
		batch, overflow := c.out.take()
		for _, f := range batch {
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			pm := f.pm
			if f.withMeta != nil && c.previewMeta.Load() {
				pm = f.withMeta
			}
			if err := c.conn.WritePreparedMessage(pm); err != nil {
				c.close(websocket.CloseGoingAway, "write failed")
				return
			}
		}
		if overflow {
			c.close(websocket.ClosePolicyViolation, "client too slow: it stopped reading; reconnect and read /history")
			return
		}
	}
}

// readLoop consumes what the client sends, so that pings, pongs and close
// frames are processed, and reads ComfyUI's feature flags message. It returns
// when the connection ends.
func (c *client) readLoop() {
	c.conn.SetReadLimit(64 << 10)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		typ, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.TextMessage {
			var m struct {
				Type string `json:"type"`
				Data struct {
					PreviewMeta bool `json:"supports_preview_metadata"`
				} `json:"data"`
			}
			if json.Unmarshal(msg, &m) == nil && m.Type == "feature_flags" {
				c.previewMeta.Store(m.Data.PreviewMeta)
			}
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	}
}
