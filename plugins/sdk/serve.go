package sdk

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/protocol"
	"github.com/face0/face0/plugins/shm"
)

// Serve runs the pack as a plugin process and never returns. Started by hand
// (not by a face0 host) it prints what it is and exits.
func Serve(p Pack) {
	// go-plugin points os.Stderr at a pipe that it streams to the host over
	// gRPC; what a dying process wrote there last is lost. The server points
	// os.Stderr back at the real stderr (which the host reads directly) once
	// serving, so that every line, a node's or the SDK's own, reaches the
	// host's log even when the process exits right after writing it.
	stderr := os.Stderr
	srv, err := NewServer(p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "face0 plugin %s: %v\n", p.Name, err)
		os.Exit(1)
	}
	srv.stderr = stderr
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  protocol.Handshake,
		VersionedPlugins: protocol.PluginSet(srv),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, protocol.ServerOptions()...)...)
		},
		// Plugin logs go to stderr, which the host forwards with the pack's name.
		Logger: hclog.New(&hclog.LoggerOptions{Name: p.Name, Level: hclog.Warn, Output: stderr}),
	})
	os.Exit(0)
}

// Server implements the node service for a pack. Serve uses it; it is exported
// so that a pack can also be embedded in another gRPC server.
type Server struct {
	pb.UnimplementedNodePluginServer
	pack  Pack
	nodes map[string]Node
	specs []*pb.NodeSpec
	calls *calls

	// stderr, set by Serve, is the process's real stderr: the first call
	// points os.Stderr back at it (see Serve).
	stderr  *os.File
	restore sync.Once
}

var (
	_ pb.NodePluginServer = (*Server)(nil)
	_ protocol.Supervisor = (*Server)(nil)
)

// NewServer checks the pack (unique node names, valid specs) and returns its server.
func NewServer(p Pack) (*Server, error) {
	if p.Name == "" {
		return nil, fmt.Errorf("pack has no name")
	}
	s := &Server{pack: p, nodes: map[string]Node{}, calls: newCalls()}
	for _, n := range p.Nodes {
		spec, err := guardedSpec(n)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", p.Name, err)
		}
		if spec.GetType() == "" {
			return nil, fmt.Errorf("pack %s: a node has no type name", p.Name)
		}
		if _, dup := s.nodes[spec.Type]; dup {
			return nil, fmt.Errorf("pack %s: node type %s is defined twice", p.Name, spec.Type)
		}
		s.nodes[spec.Type] = n
		s.specs = append(s.specs, spec)
	}
	return s, nil
}

// begin registers a call; every RPC starts with it.
func (s *Server) begin(ctx context.Context) (*call, error) {
	if s.stderr != nil {
		// go-plugin swapped os.Stderr before it began serving; undo that.
		s.restore.Do(func() { os.Stderr = s.stderr })
	}
	return s.calls.begin(protocol.CallID(ctx))
}

func (s *Server) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	c, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.calls.end(c)
	specs := make([]*pb.NodeSpec, len(s.pack.Nodes))
	for i, n := range s.pack.Nodes {
		// Asked again on every Describe, so that dynamic choices (models found
		// on disk) are fresh.
		if specs[i], err = guardedSpec(n); err != nil {
			return nil, status.Errorf(codes.Internal, "pack %s: %v", s.pack.Name, err)
		}
	}
	return &pb.DescribeResponse{Pack: s.pack.Name, PackVersion: s.pack.Version, Nodes: specs, Types: s.pack.Types}, nil
}

// AwaitCall implements protocol.Supervisor.
func (s *Server) AwaitCall(ctx context.Context, id string) (bool, error) {
	return s.calls.AwaitCall(ctx, id)
}

// guardedSpec asks a node for its spec, turning a panic (in a Choices
// function that lists files, say) into an error that says where it happened:
// a panic would otherwise end the process and lose every node of the pack.
func guardedSpec(n Node) (spec *pb.NodeSpec, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("a node panicked while describing itself: %v\n%s", r, panicStack())
		}
	}()
	return n.Spec(), nil
}

// panicStack is the stack from the panic on, cut to a readable length.
func panicStack() string {
	stack := string(debug.Stack())
	if i := strings.Index(stack, "panic("); i >= 0 {
		stack = stack[i:]
	}
	if len(stack) > 2000 {
		stack = stack[:2000]
	}
	return stack
}

func (s *Server) Execute(req *pb.ExecuteRequest, stream grpc.ServerStreamingServer[pb.ExecuteEvent]) error {
	c, err := s.begin(stream.Context())
	if err != nil {
		return err
	}
	defer s.calls.end(c)
	n, ok := s.nodes[req.NodeType]
	if !ok {
		return status.Errorf(codes.NotFound, "pack %s has no node type %q", s.pack.Name, req.NodeType)
	}
	inputs, err := shm.MapInputs(req.Inputs)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// The mappings end after the response is sent: outputs may be views of
	// inputs until then.
	defer inputs.Close()
	ctx := NewContext(stream.Context(), req.NodeId, stream.Send)
	ctx.PromptID, ctx.Dirs, ctx.Workflow = req.PromptId, req.Dirs, req.Workflow
	done := make(chan struct{})
	defer close(done)
	go s.calls.watchCancel(ctx, done, c, req.NodeType)
	outs, err := runGuarded(ctx, n, req.Inputs)
	if err != nil {
		if ctx.Err() != nil {
			return status.Error(codes.Canceled, "cancelled")
		}
		return status.Error(codes.Unknown, err.Error())
	}
	if afterExecute != nil {
		afterExecute(ctx, req.NodeType)
	}
	values, files, err := shm.WriteOutputs(outs.GetValues(), inputs)
	if err != nil {
		return status.Error(codes.Unknown, err.Error())
	}
	outs.Values = values
	if err := stream.Send(&pb.ExecuteEvent{Event: &pb.ExecuteEvent_Outputs{Outputs: outs}}); err != nil {
		shm.Remove(files)
		return err
	}
	shm.Sent(files)
	return nil
}

// afterExecute, when set (only by test builds, see memtest.go), runs after
// each node that succeeded.
var afterExecute func(ctx *Context, nodeType string)

// runGuarded turns a panic in node code into that node's error: the plugin
// process survives a buggy node.
func runGuarded(ctx *Context, n Node, in map[string]*pb.Value) (out *pb.Outputs, err error) {
	// A bad memory access in node code (an input kept past its call, say)
	// becomes this node's error too.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok && shm.Retired(f.Addr()) {
				err = fmt.Errorf("node read an input tensor after an earlier call had ended (%v): input tensors map shared memory only during their call; copy what you keep (slices.Clone)", r)
				return
			}
			err = fmt.Errorf("node panicked: %v\n%s", r, panicStack())
		}
	}()
	return n.Execute(ctx, in)
}

func (s *Server) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) (_ *pb.FingerprintResponse, err error) {
	c, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.calls.end(c)
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "node %s panicked while computing its fingerprint: %v\n%s", req.NodeType, r, panicStack())
		}
	}()
	n, ok := s.nodes[req.NodeType]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pack %s has no node type %q", s.pack.Name, req.NodeType)
	}
	f, ok := n.(Fingerprinter)
	if !ok {
		return &pb.FingerprintResponse{}, nil
	}
	fp, err := f.Fingerprint(ctx, req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.FingerprintResponse{Fingerprint: fp}, nil
}

// Verify answers for nodes that implement Verifier; any other node's effect
// is reported as not in place, so that the host runs it again.
func (s *Server) Verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	n, ok := s.nodes[req.NodeType]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pack %s has no node type %q", s.pack.Name, req.NodeType)
	}
	v, ok := n.(Verifier)
	if !ok {
		return &pb.VerifyResponse{Reason: "the node cannot check its effect"}, nil
	}
	if err := verifyGuarded(ctx, v, req); err != nil {
		return &pb.VerifyResponse{Reason: err.Error()}, nil
	}
	return &pb.VerifyResponse{InPlace: true}, nil
}

// verifyGuarded turns a panic in a node's check into "not in place".
func verifyGuarded(ctx context.Context, v Verifier, req *pb.VerifyRequest) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("its check panicked: %v", r)
		}
	}()
	return v.Verify(ctx, req)
}
