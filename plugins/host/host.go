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
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

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
	log       io.Writer
	deadlines Deadlines

	mu     sync.RWMutex // guards the fields below, which Refresh replaces
	packs  []*pack
	byNode map[string]*pack
	defs   []engine.NodeDef
	types  []*pb.TypeSpec

	// mem holds the tensors plugins return in shared memory, mapped, until
	// the engine releases them; and the files for tensors sent to plugins.
	mem *shm.Host
}

var (
	_ engine.Runner   = (*Manager)(nil)
	_ engine.Releaser = (*Manager)(nil)
)

// Start launches every source, asks each for its nodes, and returns a manager
// serving them. A source that fails to start or to list its nodes within its
// deadline is reported in the returned problems and left out; the others
// still work. Start returns early when ctx ends (an interrupt during start);
// the problems then say so, and Close stops what did start.
func Start(ctx context.Context, sources []Source, opts ...Option) (*Manager, []error) {
	m := &Manager{log: os.Stderr, deadlines: DefaultDeadlines(), byNode: map[string]*pack{}, mem: shm.NewHost(4)}
	shm.Sweep(time.Hour)
	SweepSockets()
	for _, o := range opts {
		o(m)
	}
	log := &logWriter{w: m.log}
	packs := make([]*pack, len(sources))
	for i, s := range sources {
		packs[i] = newPack(s, log, m.deadlines, m.mem)
	}
	problems := m.describeAll(ctx, packs, true)
	return m, problems
}

// Refresh asks every running pack for its nodes again. Node specs can change
// while plugins run: a Train node writes a model, and the nodes that offer
// models as choices then list it. Each pack answers within the Describe
// deadline or keeps the specs it had; Refresh holds no lock that Execute or
// Nodes need while it waits.
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
				what := "it is left out"
				if !starting {
					what = "it keeps the node specs it had"
				}
				results[i].err = fmt.Errorf("plugin %s (%s): %w; %s", p.src.Name, p.src.Path, err, what)
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
	old := map[*pack][]engine.NodeDef{}
	for _, d := range m.defs {
		p := m.byNode[d.Spec.Type]
		old[p] = append(old[p], d)
	}
	var problems []error
	var kept, dropped []*pack
	byNode := map[string]*pack{}
	var defs []engine.NodeDef
	var types []*pb.TypeSpec
	for i, p := range packs {
		r := results[i]
		var packDefs []engine.NodeDef
		switch {
		case r.err != nil && starting:
			problems = append(problems, r.err)
			dropped = append(dropped, p)
			continue
		case r.err != nil:
			problems = append(problems, r.err)
			packDefs = old[p]
		default:
			p.name = r.desc.Pack
			for _, spec := range r.desc.Nodes {
				packDefs = append(packDefs, engine.NodeDef{Spec: spec, Pack: r.desc.Pack, Build: r.desc.PackVersion + "+" + r.build})
			}
			p.types = r.desc.Types
		}
		types = append(types, p.types...)
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
	m.mu.Unlock()
	for _, p := range dropped {
		p.kill()
	}
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

// Close stops every plugin process and returns when they are gone.
func (m *Manager) Close() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var wg sync.WaitGroup
	for _, p := range m.packs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.kill()
		}()
	}
	wg.Wait()
	m.mem.Close()
	shm.SweepDead() // the plugins' files, such as those handed back for reuse
}

// Release ends the life of the tensors in values that a plugin returned in
// shared memory: their Data becomes nil and the memory is given back. The
// engine calls it once a node's outputs are no longer needed; whoever calls
// Execute directly should too (Close ends what is left).
func (m *Manager) Release(values map[string]*pb.Value) { m.mem.Release(values) }

// Detach returns values whose tensors own their bytes (copies of those in
// shared memory), for results kept after their release.
func (m *Manager) Detach(values map[string]*pb.Value) (map[string]*pb.Value, error) {
	return m.mem.Detach(values)
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
	return p.fingerprint(ctx, req)
}

// Verify asks the providing pack whether a cached result's side effects are
// still in place.
func (m *Manager) Verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	m.mu.RLock()
	p, ok := m.byNode[req.NodeType]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no running plugin provides node type %s", req.NodeType)
	}
	return p.verify(ctx, req)
}

// execute runs a node. A call refused by a retired process never ran, so it
// is sent again to a fresh one.
func (p *pack) execute(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	for tries := 0; ; tries++ {
		c, err := p.acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.src.Name, err)
		}
		outs, err := p.executeOn(ctx, c, req, on)
		p.release(c)
		if !errors.Is(err, errRetired) || tries >= maxRetired {
			return outs, err
		}
	}
}

func (p *pack) executeOn(ctx context.Context, c *proc, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error) {
	// Large tensors travel through shared memory: those a plugin returned go
	// on by name, others are written into pool files.
	inputs, lent, err := p.mem.Send(req.Inputs)
	if err != nil {
		return nil, err
	}
	// The call's end means the plugin is done with its inputs (or died, or
	// was cancelled, when the data no longer matters), so the pool files can
	// be reused once no process maps them.
	defer p.mem.Done(lent)
	sent := &pb.ExecuteRequest{NodeType: req.NodeType, NodeId: req.NodeId, Inputs: inputs, PromptId: req.PromptId, Dirs: req.Dirs, Workflow: req.Workflow}
	id := nextCallID()
	stream, err := c.rpc.Execute(protocol.WithCallID(ctx, id), sent)
	if err != nil {
		return nil, p.failed(ctx, c, id, req.NodeType, err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("plugin %s ended node %s without outputs", p.src.Name, req.NodeType)
		}
		if err != nil {
			return nil, p.failed(ctx, c, id, req.NodeType, err)
		}
		if outs := ev.GetOutputs(); outs != nil {
			// Only files named in a completed response are taken, mapped
			// without being read.
			if err := p.mem.Receive(outs.Values); err != nil {
				return nil, fmt.Errorf("plugin %s: %w", p.src.Name, err)
			}
			return outs, nil
		}
		on(ev)
	}
}

// failed explains a failed Execute call. A cancelled one may run on in the
// plugin: the pack finds out, and retires the process if the node outlives
// the grace period. After a crash a fresh process is started for the next
// node.
func (p *pack) failed(ctx context.Context, c *proc, id, nodeType string, err error) error {
	if ctx.Err() != nil {
		go p.awaitCancelled(c, id, nodeType)
		return ctx.Err()
	}
	err = p.explain(c, err, "running this node")
	if !errors.Is(err, errRetired) && c.client.Exited() {
		// A plugin that died mid-write left a file no response names:
		// remove it now rather than at the next start.
		go shm.SweepDead()
		p.restartSoon()
		return fmt.Errorf("%w; it is being restarted", err)
	}
	return err
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
