// Package host launches and supervises node plugin processes. Each pack (a
// built-in pack re-executed from the face0 binary, or a third-party binary from
// the plugins folder) runs as its own process, speaks gRPC through go-plugin,
// dies with the host, and is restarted when it crashes.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/protocol"
	"github.com/face0/face0/plugins/shm"
)

// Source says how to start one pack's process.
type Source struct {
	// Name identifies the pack in logs and errors ("image", "imagefx").
	Name string
	// Path is the executable; Args its arguments.
	Path string
	Args []string
	// Env is added to the host's environment for this plugin.
	Env []string
}

// Builtin is the source of a pack compiled into this binary: the binary itself,
// re-executed as `face0 plugin <name>`.
func Builtin(name string) (Source, error) {
	exe, err := os.Executable()
	if err != nil {
		return Source{}, fmt.Errorf("cannot find own executable to start built-in pack %s: %w", name, err)
	}
	return Source{Name: name, Path: exe, Args: []string{"plugin", name}}, nil
}

// Discover lists the plugin executables in dir (not recursive). A missing dir
// is no error: it just has no plugins.
func Discover(dir string) ([]Source, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugins folder: %w", err)
	}
	var out []Source
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Mode()&0o111 == 0 {
			continue
		}
		out = append(out, Source{Name: e.Name(), Path: filepath.Join(dir, e.Name())})
	}
	return out, nil
}

// Manager runs a set of packs and routes node executions to them.
type Manager struct {
	log io.Writer

	mu     sync.RWMutex // guards the fields below, which Refresh replaces
	packs  []*pack
	byNode map[string]*pack
	defs   []engine.NodeDef
	types  []*pb.TypeSpec
}

var _ engine.Runner = (*Manager)(nil)

// Option configures a Manager.
type Option func(*Manager)

// WithLog sends plugin stderr and supervision messages to w (default stderr).
func WithLog(w io.Writer) Option { return func(m *Manager) { m.log = w } }

// Start launches every source, asks each for its nodes, and returns a manager
// serving them. A source that fails to start is reported in the returned
// problems and left out; the others still work.
func Start(ctx context.Context, sources []Source, opts ...Option) (*Manager, []error) {
	m := &Manager{log: os.Stderr, byNode: map[string]*pack{}}
	shm.Sweep(time.Hour)
	for _, o := range opts {
		o(m)
	}
	packs := make([]*pack, len(sources))
	for i, s := range sources {
		packs[i] = &pack{src: s, log: m.log, pool: shm.NewPool(4)}
	}
	problems := m.describeAll(ctx, packs, true)
	return m, problems
}

// Refresh asks every running pack for its nodes again. Node specs can change
// while plugins run: a Train node writes a model, and the nodes that offer
// models as choices then list it.
func (m *Manager) Refresh(ctx context.Context) []error {
	m.mu.RLock()
	packs := append([]*pack(nil), m.packs...)
	m.mu.RUnlock()
	return m.describeAll(ctx, packs, false)
}

// describeAll asks packs for their specs concurrently and installs the
// result. At start, packs that fail are stopped and left out; on a refresh a
// failing pack keeps the specs it had.
func (m *Manager) describeAll(ctx context.Context, packs []*pack, starting bool) []error {
	type described struct {
		desc  *pb.DescribeResponse
		build string
		err   error
	}
	results := make([]described, len(packs))
	var wg sync.WaitGroup
	for i, p := range packs {
		wg.Add(1)
		go func(i int, p *pack) {
			defer wg.Done()
			desc, err := p.describe(ctx)
			if err != nil {
				results[i].err = fmt.Errorf("plugin %s (%s): %w", p.src.Name, p.src.Path, err)
				return
			}
			build, err := binaryHash(p.src.Path)
			if err != nil {
				results[i].err = fmt.Errorf("plugin %s: %w", p.src.Name, err)
				return
			}
			results[i] = described{desc: desc, build: build}
		}(i, p)
	}
	wg.Wait()

	m.mu.Lock()
	defer m.mu.Unlock()
	old := map[*pack][]engine.NodeDef{}
	for _, d := range m.defs {
		p := m.byNode[d.Spec.Type]
		old[p] = append(old[p], d)
	}
	var problems []error
	var kept []*pack
	byNode := map[string]*pack{}
	var defs []engine.NodeDef
	var types []*pb.TypeSpec
	for i, p := range packs {
		r := results[i]
		var packDefs []engine.NodeDef
		switch {
		case r.err != nil && starting:
			problems = append(problems, r.err)
			p.kill()
			continue
		case r.err != nil:
			problems = append(problems, r.err)
			packDefs = old[p]
		default:
			p.name = r.desc.Pack
			for _, spec := range r.desc.Nodes {
				packDefs = append(packDefs, engine.NodeDef{Spec: spec, Pack: r.desc.Pack, Build: r.desc.PackVersion + "+" + r.build})
			}
			types = append(types, r.desc.Types...)
		}
		kept = append(kept, p)
		for _, d := range packDefs {
			if prev, dup := byNode[d.Spec.Type]; dup {
				problems = append(problems, fmt.Errorf("plugin %s: node type %s is already provided by %s; keeping that one", p.src.Name, d.Spec.Type, prev.src.Name))
				continue
			}
			byNode[d.Spec.Type] = p
			defs = append(defs, d)
		}
	}
	m.packs, m.byNode, m.defs, m.types = kept, byNode, defs, types
	return problems
}

// Nodes lists the node definitions of every running pack.
func (m *Manager) Nodes() []engine.NodeDef {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.defs
}

// Types lists the port types the packs declared.
func (m *Manager) Types() []*pb.TypeSpec {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.types
}

// Packs lists the running packs' names.
func (m *Manager) Packs() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, len(m.packs))
	for i, p := range m.packs {
		out[i] = p.src.Name
	}
	sort.Strings(out)
	return out
}

// Close stops every plugin process.
func (m *Manager) Close() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, p := range m.packs {
		p.kill()
	}
}

// Execute runs a node on the pack that provides it.
func (m *Manager) Execute(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	m.mu.RLock()
	p, ok := m.byNode[req.NodeType]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no running plugin provides node type %s", req.NodeType)
	}
	return p.execute(ctx, req, on)
}

// Fingerprint asks the providing pack for a node's fingerprint.
func (m *Manager) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	m.mu.RLock()
	p, ok := m.byNode[req.NodeType]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no running plugin provides node type %s", req.NodeType)
	}
	c, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.Fingerprint(ctx, req)
	if err != nil {
		return nil, p.explain(err)
	}
	return resp.Fingerprint, nil
}

// pack is one plugin process, started on demand and restarted after a crash.
type pack struct {
	src  Source
	name string
	log  io.Writer

	pool *shm.Pool // shared-memory files for large inputs, reused between calls

	mu     sync.Mutex
	client *plugin.Client
	rpc    pb.NodePluginClient
	// sockets is the folder the running process makes its unix socket in
	// (go-plugin's PLUGIN_UNIX_SOCKET_DIR), removed when the process is
	// stopped: a plugin that is killed never removes its own socket, and
	// without this they pile up in the system's temporary folder.
	sockets string
}

func (p *pack) describe(ctx context.Context) (*pb.DescribeResponse, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.Describe(ctx, &pb.DescribeRequest{HostVersion: "1"})
	if err != nil {
		return nil, p.explain(err)
	}
	return resp, nil
}

// conn returns a live client, starting the process if it is not running
// (first use, or after a crash).
func (p *pack) conn(ctx context.Context) (pb.NodePluginClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil && !p.client.Exited() {
		return p.rpc, nil
	}
	if p.client != nil {
		fmt.Fprintf(p.log, "face0: restarting plugin %s after it exited\n", p.src.Name)
		p.stopLocked()
	}
	sockets, err := os.MkdirTemp("", "face0-plugin-")
	if err != nil {
		return nil, fmt.Errorf("start: socket folder: %w", err)
	}
	cmd := exec.Command(p.src.Path, p.src.Args...)
	// The plugin dies with the host, even if the host is killed with SIGKILL.
	// Its own process group keeps the terminal's Ctrl-C and a SIGTERM sent to
	// the host's group (systemd, timeout, kill -- -PGID) away from it: the
	// host shuts its plugins down itself, instead of seeing each one die
	// under it and reporting "plugin process exited" as an error.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Env = append(append(os.Environ(), "FACE0_PLUGIN_NAME="+p.src.Name, plugin.EnvUnixSocketDir+"="+sockets), p.src.Env...)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		VersionedPlugins: protocol.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  protocol.DialOptions(),
		StartTimeout:     30 * time.Second,
		Stderr:           prefixWriter{w: p.log, prefix: "plugin " + p.src.Name + ": "},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin." + p.src.Name, Level: hclog.Error, Output: p.log}),
	})
	proto, err := client.Client()
	if err != nil {
		client.Kill()
		os.RemoveAll(sockets)
		return nil, fmt.Errorf("start: %w (is it a face0 plugin built with the current SDK? it must call sdk.Serve and print nothing to stdout before it)", err)
	}
	raw, err := proto.Dispense(protocol.PluginName)
	if err != nil {
		client.Kill()
		os.RemoveAll(sockets)
		return nil, fmt.Errorf("connect: %w", err)
	}
	p.client, p.rpc, p.sockets = client, raw.(pb.NodePluginClient), sockets
	return p.rpc, nil
}

// stopLocked kills the process and removes its socket folder; p.mu is held.
func (p *pack) stopLocked() {
	if p.client != nil {
		p.client.Kill()
		p.client = nil
	}
	if p.sockets != "" {
		os.RemoveAll(p.sockets)
		p.sockets = ""
	}
}

func (p *pack) kill() {
	p.pool.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

// exited reports whether the process has gone, waiting briefly: after a crash
// the broken stream can arrive before go-plugin notices the exit.
func (p *pack) exited() bool {
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c == nil {
		return true
	}
	for i := 0; i < 50; i++ {
		if c.Exited() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func (p *pack) execute(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.src.Name, err)
	}
	// Large tensors travel through shared memory; files the plugin did not
	// consume (it crashed) are removed when the call ends.
	inputs, files, err := p.pool.Externalize(req.Inputs)
	if err != nil {
		return nil, err
	}
	// The call's end means the plugin has read its inputs (or died, or was
	// cancelled, when the data no longer matters), so the files can be reused.
	defer p.pool.Release(files)
	sent := &pb.ExecuteRequest{NodeType: req.NodeType, NodeId: req.NodeId, Inputs: inputs, PromptId: req.PromptId, Dirs: req.Dirs, Workflow: req.Workflow}
	stream, err := c.Execute(ctx, sent)
	if err != nil {
		return nil, p.explain(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("plugin %s ended node %s without outputs", p.src.Name, req.NodeType)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, p.explain(err)
		}
		if outs := ev.GetOutputs(); outs != nil {
			if err := shm.Internalize(outs.Values); err != nil {
				return nil, fmt.Errorf("plugin %s: %w", p.src.Name, err)
			}
			return outs, nil
		}
		on(ev)
	}
}

// explain turns a gRPC failure into the node's error. A crash (the process is
// gone) is said plainly; the next use restarts the plugin.
func (p *pack) explain(err error) error {
	st, _ := status.FromError(err)
	if st.Code() == codes.Unavailable || st.Code() == codes.Internal {
		if p.exited() {
			p.restartSoon()
			return fmt.Errorf("plugin %s crashed (its process exited) while running this node; it is being restarted", p.src.Name)
		}
	}
	if st.Code() == codes.Unknown || st.Code() == codes.InvalidArgument || st.Code() == codes.NotFound {
		return errors.New(st.Message())
	}
	return fmt.Errorf("plugin %s: %s", p.src.Name, st.Message())
}

// restartSoon starts a fresh process in the background so the next node does
// not pay for the start.
func (p *pack) restartSoon() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := p.conn(ctx); err != nil {
			fmt.Fprintf(p.log, "face0: plugin %s did not restart: %v\n", p.src.Name, err)
		}
	}()
}

// binaryHash identifies a plugin's code for cache keys: rebuilding a plugin
// invalidates its cached results even if its version string stays the same.
var (
	hashMu    sync.Mutex
	hashCache = map[string]string{}
)

func binaryHash(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	ck := fmt.Sprintf("%s|%d|%d", path, st.Size(), st.ModTime().UnixNano())
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashCache[ck]; ok {
		return h, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	s := hex.EncodeToString(h.Sum(nil))[:16]
	hashCache[ck] = s
	return s, nil
}

// prefixWriter labels each line a plugin writes to stderr.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (pw prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(pw.w, pw.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
