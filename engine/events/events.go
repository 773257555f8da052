// Package events is the one stream of what happens during a run. The CLI draws
// progress bars from it, the server turns it into ComfyUI websocket messages,
// and tests assert on it.
package events

import (
	"sync"
	"time"
)

// Type names an event. The names follow ComfyUI's websocket messages where they
// overlap, so the server's translation stays trivial.
type Type string

const (
	ExecutionStart Type = "execution_start"
	// Cached lists the nodes whose results came from the cache.
	Cached      Type = "execution_cached"
	Executing   Type = "executing"
	Progress    Type = "progress"
	Preview     Type = "preview"
	Log         Type = "log"
	Executed    Type = "executed"
	Error       Type = "execution_error"
	Interrupted Type = "execution_interrupted"
	Success     Type = "execution_success"
)

// Event is one thing that happened. Which fields are set depends on Type.
type Event struct {
	Type     Type      `json:"type"`
	PromptID string    `json:"prompt_id"`
	Time     time.Time `json:"time"`
	Node     string    `json:"node,omitempty"`
	NodeType string    `json:"node_type,omitempty"`

	// Cached: the nodes served from the cache.
	Nodes []string `json:"nodes,omitempty"`

	// Progress.
	Value int64  `json:"value,omitempty"`
	Max   int64  `json:"max,omitempty"`
	Text  string `json:"text,omitempty"`

	// Preview: an encoded image.
	Format string `json:"format,omitempty"`
	Data   []byte `json:"-"`

	// Log.
	Level   string `json:"level,omitempty"`
	Message string `json:"message,omitempty"`

	// Executed: what the node produced, in a JSON-friendly form (images as
	// saved files, scalars as themselves, tensors as summaries).
	Output map[string]any `json:"output,omitempty"`
	// Executed: whether the result came from the cache.
	FromCache bool `json:"from_cache,omitempty"`
	// Executed: wall time of the node.
	Duration time.Duration `json:"duration,omitempty"`

	// Error and Interrupted.
	Err       string   `json:"error,omitempty"`
	Completed []string `json:"completed,omitempty"` // nodes that finished before the failure
	Skipped   []string `json:"skipped,omitempty"`   // nodes that did not run because of it
}

// Sink receives events. Implementations must not block for long: the scheduler
// calls Emit from node goroutines.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

func (f SinkFunc) Emit(e Event) { f(e) }

// Discard drops every event.
var Discard Sink = SinkFunc(func(Event) {})

// Multi sends each event to every sink in order.
func Multi(sinks ...Sink) Sink {
	return SinkFunc(func(e Event) {
		for _, s := range sinks {
			s.Emit(e)
		}
	})
}

// Recorder keeps every event; for tests and for history.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *Recorder) Emit(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Of returns the recorded events of one type.
func (r *Recorder) Of(t Type) []Event {
	var out []Event
	for _, e := range r.Events() {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}
