package protocol

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	pb "github.com/face0/face0/plugins/proto"
)

// The supervisor service lets the host learn what became of a call it
// cancelled. Only the plugin knows whether a cancelled node stopped; only the
// host knows when its other calls' results have arrived. So the host asks
// (AwaitCall) and the plugin answers once the node stopped or outlived the
// grace period; in the second case the host sends new calls to a fresh
// process and stops this one as soon as nothing else of its own runs there.
//
// It is a second gRPC service beside the node service, with messages from the
// protobuf well-known types, so that it needs no change to node.proto. A
// plugin without it (another SDK) answers Unimplemented and is left alone.
const superviseService = "face0.plugin.v1.Supervisor"

// CallIDKey is the gRPC metadata key under which the host names each Execute
// call, so that AwaitCall can refer to it.
const CallIDKey = "face0-call-id"

// Supervisor is the plugin side of the supervisor service.
type Supervisor interface {
	// AwaitCall blocks until the Execute call named id has returned (false)
	// or its node ignored cancellation past the grace period (true).
	AwaitCall(ctx context.Context, id string) (stubborn bool, err error)
}

var supervisorDesc = grpc.ServiceDesc{
	ServiceName: superviseService,
	HandlerType: (*Supervisor)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "AwaitCall",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			stubborn, err := srv.(Supervisor).AwaitCall(ctx, in.GetValue())
			if err != nil {
				return nil, err
			}
			return wrapperspb.Bool(stubborn), nil
		},
	}},
	Metadata: "hand-written: messages are google.protobuf.StringValue and BoolValue",
}

// Client is the host's side of a plugin connection: the node service and the
// supervisor service over one gRPC connection.
type Client struct {
	pb.NodePluginClient
	conn grpc.ClientConnInterface
}

// NewClient wraps a connection to a plugin.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{NodePluginClient: pb.NewNodePluginClient(conn), conn: conn}
}

// ErrNoSupervisor is returned by AwaitCall for a plugin without the service.
var ErrNoSupervisor = status.Error(codes.Unimplemented, "plugin has no supervisor service")

// AwaitCall asks the plugin what became of the cancelled call id.
func (c *Client) AwaitCall(ctx context.Context, id string) (stubborn bool, err error) {
	out := new(wrapperspb.BoolValue)
	if err := c.conn.Invoke(ctx, "/"+superviseService+"/AwaitCall", wrapperspb.String(id), out); err != nil {
		if status.Code(err) == codes.Unimplemented {
			return false, ErrNoSupervisor
		}
		return false, err
	}
	return out.GetValue(), nil
}

// WithCallID names an outgoing Execute call.
func WithCallID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, CallIDKey, id)
}

// CallID is the host's name of an incoming call ("" when it has none).
func CallID(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, CallIDKey); len(v) > 0 {
		return v[0]
	}
	return ""
}
