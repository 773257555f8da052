// Package protocol holds what both ends of the plugin connection must agree on:
// the go-plugin handshake, the protocol version, and the gRPC limits.
package protocol

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/face0/face0/plugins/proto"
)

// Version is the plugin protocol version (plugins/proto/node.proto, package
// face0.plugin.v1). The host lists the versions it speaks; go-plugin picks the
// highest one the plugin also speaks, and refuses a plugin with none in common.
const Version = 1

// Handshake guards against running a random binary as a plugin, and against a
// plugin binary started by hand: it exits with a message instead.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  Version,
	MagicCookieKey:   "FACE0_PLUGIN",
	MagicCookieValue: "8f7c1e2a-face0-node-plugin",
}

// PluginName is the name under which the node service is dispensed.
const PluginName = "nodes"

// MaxMessage is the gRPC message limit on both sides. gRPC defaults to 4 MiB,
// far below a batch of images; model weights never travel, so 256 MiB is ample.
const MaxMessage = 256 << 20

// Window sizes raise gRPC's flow-control windows so that a 16 MB tensor crosses
// a Unix socket without stalling on window updates.
const (
	StreamWindow = 16 << 20
	ConnWindow   = 64 << 20
)

// ServerOptions are the gRPC server options a plugin must use.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.ReadBufferSize(1 << 20),
		grpc.WriteBufferSize(1 << 20),
	}
}

// DialOptions are the gRPC dial options of the host.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithReadBufferSize(1 << 20),
		grpc.WithWriteBufferSize(1 << 20),
	}
}

// GRPCPlugin adapts the node service to go-plugin. The plugin side sets Impl;
// the host side leaves it nil and gets a client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pb.NodePluginServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterNodePluginServer(s, p.Impl)
	if sup, ok := p.Impl.(Supervisor); ok {
		s.RegisterService(&supervisorDesc, sup)
	}
	return nil
}

// GRPCClient returns a *Client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// PluginSet is the versioned plugin map both sides pass to go-plugin.
func PluginSet(server pb.NodePluginServer) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{Version: {PluginName: &GRPCPlugin{Impl: server}}}
}

// Retired is the message of the Aborted status a plugin answers a call with
// once it takes no new calls: one of its nodes ignored cancellation past the
// grace period, so the process exits as soon as its other running calls
// finish. The call never started; the host starts a fresh process and sends
// the call there.
const Retired = "face0: plugin process retired (a node ignored cancellation); start a fresh one"

// EnvCancelGrace names the environment variable through which the host tells
// a plugin its cancellation grace period (a Go duration).
const EnvCancelGrace = "FACE0_CANCEL_GRACE"
