// Package sdk is what a node author imports. Write a Go function whose input and
// output are structs, wrap it with Func, list it in a Pack and call Serve from main:
//
//	type InvertIn struct {
//		Image    sdk.Image `face0:"image"`
//		Strength float64   `face0:"strength,min=0,max=1,default=1,widget=slider"`
//	}
//	type InvertOut struct {
//		Image sdk.Image `face0:"IMAGE"`
//	}
//	func invert(ctx *sdk.Context, in InvertIn) (InvertOut, error) { ... }
//
//	func main() {
//		sdk.Serve(sdk.Pack{Name: "imagefx", Version: "1.0.0",
//			Nodes: []sdk.Node{sdk.Func("Invert", invert, sdk.Category("image/filters"))}})
//	}
//
// The struct fields become typed ports; the tags give names and the JSON Schema
// of literal inputs. The binary then runs as a face0 plugin process: the host
// launches it, talks gRPC to it, and restarts it if it crashes.
package sdk

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"sync"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Node is one node type. Most authors build nodes with Func; implement Node
// directly for full control over specs and values.
type Node interface {
	Spec() *pb.NodeSpec
	Execute(ctx *Context, inputs map[string]*pb.Value) (*pb.Outputs, error)
}

// Fingerprinter is implemented by nodes whose result depends on more than their
// inputs show (a file's content). The host calls it before the cache lookup.
type Fingerprinter interface {
	Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error)
}

// Verifier is implemented by nodes with side effects (see SideEffects) that
// can tell whether the effect of a cached run is still in place: nil when it
// is, else an error saying what is missing.
type Verifier interface {
	Verify(ctx context.Context, req *pb.VerifyRequest) error
}

// Pack is a set of nodes served by one plugin process.
type Pack struct {
	Name    string
	Version string
	Nodes   []Node
	Types   []*pb.TypeSpec
}

// Context is what a running node gets: cancellation (it is a context.Context),
// and ways to report progress, previews and log lines to the user.
type Context struct {
	context.Context
	NodeID   string
	PromptID string
	// Dirs are the host's input, output, temp and models folders.
	Dirs *pb.Dirs
	// Workflow is the running workflow's JSON, given to output nodes only.
	Workflow []byte

	mu   sync.Mutex
	send func(*pb.ExecuteEvent) error
}

// NewContext makes a Context that delivers events to send. The plugin server
// makes these; tests of node code can too.
func NewContext(ctx context.Context, nodeID string, send func(*pb.ExecuteEvent) error) *Context {
	if send == nil {
		send = func(*pb.ExecuteEvent) error { return nil }
	}
	return &Context{Context: ctx, NodeID: nodeID, send: send}
}

func (c *Context) emit(e *pb.ExecuteEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.send(e) // a vanished host cancels the context; the node sees that
}

// Progress reports value out of max (steps of a sampler, say).
func (c *Context) Progress(value, max int64) {
	c.emit(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Progress{Progress: &pb.Progress{Value: value, Max: max}}})
}

// Preview shows an image on the node while it runs.
func (c *Context) Preview(img image.Image) {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return
	}
	c.emit(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Preview{Preview: &pb.Preview{Format: "png", Data: buf.Bytes()}}})
}

// Logf sends a log line to the host.
func (c *Context) Logf(format string, args ...any) {
	c.emit(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Log{Log: &pb.Log{Message: fmt.Sprintf(format, args...)}}})
}

// Warnf sends a warning line to the host.
func (c *Context) Warnf(format string, args ...any) {
	c.emit(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Log{Log: &pb.Log{Level: pb.Log_WARN, Message: fmt.Sprintf(format, args...)}}})
}

// Image is an IMAGE port: a batch of images of one size.
type Image struct {
	Batch []*image.NRGBA
}

// ImageOf wraps images as an Image.
func ImageOf(imgs ...image.Image) (Image, error) {
	v, err := value.Images(imgs...)
	if err != nil {
		return Image{}, err
	}
	b, err := value.AsImages(v)
	return Image{Batch: b}, err
}

// Tensor is a tensor port (LATENT, CONDITIONING, ...). Its port type comes from
// the field's tag: `face0:"latent,type=LATENT"`.
//
// An input tensor is not copied: a large one's Data maps the host's shared
// memory for the length of the call. Writing into it is fine (the writes stay
// in this process), but it is unmapped when the node returns: copy what you
// keep for later calls (slices.Clone). An output whose Data is an input's,
// unchanged, is handed on without being written at all.
type Tensor struct {
	Data  []float32
	Shape []int64
}

// Embedding is a FACE_EMBEDDING port: a vector and the space it lives in.
type Embedding struct {
	Space  string
	Vector []float32
}

// Raw passes a protocol Value through untouched, for custom types:
// `face0:"mask,type=MY_MASK"`. Its tensors' Data follow the rule of Tensor:
// valid during the call only, and handed on without a copy when returned
// unchanged.
type Raw = *pb.Value
