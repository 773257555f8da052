package server

import (
	"encoding/binary"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/face0/face0/engine/events"
)

// ComfyUI's binary event types and preview image types.
const (
	binaryPreviewImage             = 1
	binaryPreviewImageWithMetadata = 4
	previewJPEG                    = 1
	previewPNG                     = 2
)

// jsonFrame encodes {"type": typ, "data": data}, ComfyUI's message envelope.
func jsonFrame(typ string, data any, lossy bool) *frame {
	b, err := json.Marshal(map[string]any{"type": typ, "data": data})
	if err != nil {
		return nil // data is built here from plain values; cannot happen
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		return nil
	}
	return &frame{pm: pm, lossy: lossy, raw: b}
}

// previewFrame is ComfyUI's PREVIEW_IMAGE binary message: big-endian uint32
// event type 1, uint32 image type (1 JPEG, 2 PNG), then the encoded image. It
// also carries the PREVIEW_IMAGE_WITH_METADATA form (event type 4, uint32
// length of a JSON object naming the node and prompt, that JSON, the image)
// for clients that ask for it: with branches running in parallel, only that
// form tells which node a preview belongs to.
func previewFrame(format string, img []byte, node, promptID string) *frame {
	kind := uint32(previewPNG)
	mime := "image/png"
	if format == "jpeg" || format == "jpg" {
		kind, mime = previewJPEG, "image/jpeg"
	}
	b := make([]byte, 8+len(img))
	binary.BigEndian.PutUint32(b[0:], binaryPreviewImage)
	binary.BigEndian.PutUint32(b[4:], kind)
	copy(b[8:], img)
	pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, b)
	if err != nil {
		return nil
	}
	meta, _ := json.Marshal(map[string]any{"node_id": node, "display_node_id": node, "real_node_id": node,
		"parent_node_id": nil, "prompt_id": promptID, "image_type": mime})
	m := make([]byte, 8+len(meta)+len(img))
	binary.BigEndian.PutUint32(m[0:], binaryPreviewImageWithMetadata)
	binary.BigEndian.PutUint32(m[4:], uint32(len(meta)))
	copy(m[8:], meta)
	copy(m[8+len(meta):], img)
	withMeta, err := websocket.NewPreparedMessage(websocket.BinaryMessage, m)
	if err != nil {
		return nil
	}
	return &frame{pm: pm, lossy: true, raw: b, withMeta: withMeta}
}

func statusData(queueRemaining int, sid string) map[string]any {
	d := map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": queueRemaining}}}
	if sid != "" {
		d["sid"] = sid
	}
	return d
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixMilli()
}

// runSink turns one run's engine events into ComfyUI websocket messages for the
// submitting client, and collects what the history entry needs. The engine
// calls Emit from node goroutines, hence the mutex; Emit only encodes and
// queues, it never waits on a client.
type runSink struct {
	send func(*frame)
	id   string

	mu        sync.Mutex
	started   bool
	sawCached bool
	running   map[string]string // node id -> type, executing now
	outputs   map[string]map[string]any
	messages  [][2]any
	status    string // "success" or "error"; "" until the run ends
}

func newRunSink(id string, send func(*frame)) *runSink {
	return &runSink{id: id, send: send, running: map[string]string{}, outputs: map[string]map[string]any{}}
}

func (r *runSink) Emit(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.id
	must := func(typ string, data map[string]any) {
		r.send(jsonFrame(typ, data, false))
	}
	// ComfyUI always reports the cached set (maybe empty) right after the start;
	// the engine reports it only when something was cached.
	if r.started && !r.sawCached && e.Type != events.Cached {
		r.cached(nil, time.Now())
	}
	switch e.Type {
	case events.ExecutionStart:
		r.started = true
		data := map[string]any{"prompt_id": id, "timestamp": millis(e.Time)}
		r.messages = append(r.messages, [2]any{"execution_start", data})
		must("execution_start", data)
	case events.Cached:
		r.cached(e.Nodes, e.Time)
	case events.Executing:
		r.running[e.Node] = e.NodeType
		must("executing", map[string]any{"node": e.Node, "display_node": e.Node, "prompt_id": id})
	case events.Progress:
		r.send(jsonFrame("progress", map[string]any{"value": e.Value, "max": e.Max, "prompt_id": id, "node": e.Node}, true))
	case events.Preview:
		r.send(previewFrame(e.Format, e.Data, e.Node, id))
	case events.Log:
		// Not a ComfyUI message; ComfyUI clients ignore types they do not know.
		r.send(jsonFrame("face0_log", map[string]any{"prompt_id": id, "node": e.Node, "level": e.Level, "message": e.Message}, true))
	case events.Executed:
		delete(r.running, e.Node)
		// As in ComfyUI, only nodes with something to show send "executed".
		if len(e.Output) > 0 {
			r.outputs[e.Node] = e.Output
			must("executed", map[string]any{"node": e.Node, "display_node": e.Node, "output": e.Output, "prompt_id": id})
		}
	case events.Error:
		r.status = "error"
		data := map[string]any{
			"prompt_id": id, "node_id": e.Node, "node_type": e.NodeType, "executed": nonNil(e.Completed),
			"exception_message": e.Err, "exception_type": "face0.NodeError", "traceback": []string{},
			"current_inputs": map[string]any{}, "current_outputs": map[string]any{}, "timestamp": millis(e.Time),
		}
		r.messages = append(r.messages, [2]any{"execution_error", data})
		must("execution_error", data)
	case events.Interrupted:
		r.status = "error"
		node, typ := r.someRunning()
		data := map[string]any{"prompt_id": id, "node_id": node, "node_type": typ, "executed": nonNil(e.Completed), "timestamp": millis(e.Time)}
		r.messages = append(r.messages, [2]any{"execution_interrupted", data})
		must("execution_interrupted", data)
	case events.Success:
		r.status = "success"
		data := map[string]any{"prompt_id": id, "timestamp": millis(e.Time)}
		r.messages = append(r.messages, [2]any{"execution_success", data})
		must("execution_success", data)
	}
}

func (r *runSink) cached(nodes []string, t time.Time) {
	r.sawCached = true
	data := map[string]any{"nodes": nonNil(nodes), "prompt_id": r.id, "timestamp": millis(t)}
	r.messages = append(r.messages, [2]any{"execution_cached", data})
	r.send(jsonFrame("execution_cached", data, false))
}

// someRunning names a node that was executing when the run was interrupted
// (the lowest id, for a stable answer when branches ran in parallel).
func (r *runSink) someRunning() (string, string) {
	ids := make([]string, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return "", ""
	}
	sort.Strings(ids)
	return ids[0], r.running[ids[0]]
}

// failBeforeRun reports a prompt that could not even start (its workflow no
// longer validates after a restart, say) the way a failed run is reported.
func (r *runSink) failBeforeRun(err error) {
	r.Emit(events.Event{Type: events.ExecutionStart, PromptID: r.id, Time: time.Now()})
	r.Emit(events.Event{Type: events.Error, PromptID: r.id, Time: time.Now(), Err: err.Error()})
}

// historyEntry is the ComfyUI /history shape of the finished run.
func (r *runSink) historyEntry(p *queuedPrompt) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	status := r.status
	if status == "" {
		status = "error"
	}
	meta := map[string]any{}
	for node := range r.outputs {
		meta[node] = map[string]any{"node_id": node, "display_node": node, "parent_node": nil, "real_node_id": node}
	}
	return map[string]any{
		"prompt":  p.item(),
		"outputs": r.outputs,
		"status":  map[string]any{"status_str": status, "completed": status == "success", "messages": r.messages},
		"meta":    meta,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
