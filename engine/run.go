package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/port"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Cache is the part of cache.Store the engine uses.
type Cache interface {
	// Info says whether an entry exists without reading it.
	Info(k cache.Key) (cache.EntryInfo, bool)
	Get(k cache.Key) ([]byte, bool, error)
	Put(k cache.Key, v []byte, producer string) error
}

var _ Cache = (*cache.Store)(nil)

// Releaser is implemented by runners whose outputs borrow memory that must be
// given back: the plugin host maps the tensors plugins return from shared
// memory. The engine releases a node's outputs as soon as nothing in the run
// needs them (every dependent has run and the cache has its copy), and
// detaches the outputs Run returns, so that a Result owns its bytes.
type Releaser interface {
	// Release ends the borrow of every tensor in values; their bytes must
	// not be read afterwards.
	Release(values map[string]*pb.Value)
	// Detach returns values that borrow nothing (copies where needed).
	Detach(values map[string]*pb.Value) (map[string]*pb.Value, error)
}

// Engine runs plans on a Runner, with an optional cache.
type Engine struct {
	runner   Runner
	cache    Cache
	parallel int
	dirs     *pb.Dirs
	writes   *writer
}

// Option configures an Engine.
type Option func(*Engine)

// WithCache stores deterministic nodes' results and reuses them.
func WithCache(c Cache) Option { return func(e *Engine) { e.cache = c } }

// WithParallelism bounds how many nodes run at once (default: the CPU count,
// at least 2). Independent branches run concurrently up to this bound.
func WithParallelism(n int) Option { return func(e *Engine) { e.parallel = max(1, n) } }

// WithDirs tells nodes where the input, output, temp and models folders are.
func WithDirs(d *pb.Dirs) Option { return func(e *Engine) { e.dirs = d } }

// New returns an engine that executes nodes on r.
func New(r Runner, opts ...Option) *Engine {
	e := &Engine{runner: r, parallel: max(2, runtime.NumCPU()), dirs: &pb.Dirs{}, writes: newWriter()}
	for _, o := range opts {
		o(e)
	}
	return e
}

// RunOptions are per run.
type RunOptions struct {
	PromptID string
	NoCache  bool // neither read nor write the cache
	Sink     events.Sink
	// UIOnly says the caller reads only the Ui of Result.Outputs (and the
	// events), as the server does: the output values are not kept past the
	// run, which spares copying large tensors out of shared memory.
	UIOnly bool
}

// Result is what a run produced.
type Result struct {
	PromptID string
	// Outputs holds the outputs of the wanted nodes (executed or cached).
	Outputs map[string]*pb.Outputs
	// Executed and Cached list node ids in the order they finished.
	Executed []string
	Cached   []string
	// Failed maps a failed node to its error; Skipped lists nodes that did not
	// run because something they need failed or the run was interrupted.
	Failed  map[string]error
	Skipped []string
}

// NodeError is a node's failure, as returned by Run.
type NodeError struct {
	Node, NodeType string
	Err            error
}

func (e *NodeError) Error() string { return fmt.Sprintf("node %s (%s): %v", e.Node, e.NodeType, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// ErrInterrupted is returned when the run's context is cancelled.
var ErrInterrupted = errors.New("interrupted")

type nodeState struct {
	key     cache.Key
	outputs *pb.Outputs
	done    bool
	failed  bool
	// The dependents that have yet to finish or be skipped; and, for
	// outputs a Releaser lent (not read from the cache), who still reads
	// them and whether the run let go.
	users int
	hold  *hold
	let   bool
}

// Run executes the plan. It returns the result and, if any node failed or the
// run was interrupted, an error (a *NodeError for the first failure, or
// ErrInterrupted). Independent branches keep running when a node fails.
func (e *Engine) Run(ctx context.Context, p *Plan, opts RunOptions) (*Result, error) {
	sink := opts.Sink
	if sink == nil {
		sink = events.Discard
	}
	res := &Result{PromptID: opts.PromptID, Outputs: map[string]*pb.Outputs{}, Failed: map[string]error{}}
	emit := func(ev events.Event) {
		ev.PromptID = opts.PromptID
		ev.Time = time.Now()
		sink.Emit(ev)
	}
	emit(events.Event{Type: events.ExecutionStart})
	useCache := e.cache != nil && !opts.NoCache
	defer lowly.run()() // the cache's writes mostly wait for the end of runs

	state := make(map[*planNode]*nodeState, len(p.order))
	var wfJSON []byte
	// Keys, top-down, then the cache lookups. A node whose value is neither
	// wanted nor needed by a node that must execute is never loaded.
	for _, n := range p.order {
		st := &nodeState{}
		state[n] = st
		k, err := e.key(ctx, n, state)
		if err != nil {
			st.failed = true
			res.Failed[n.id] = err
			continue
		}
		st.key = k
	}
	var cachedIDs []string
	var rerun []events.Event
	if useCache {
		for _, n := range p.order {
			e.writes.waitKey(state[n].key) // an earlier run may still be writing it
		}
		cachedIDs, rerun = e.loadCached(ctx, p, state)
	}
	if len(cachedIDs) > 0 {
		emit(events.Event{Type: events.Cached, Nodes: cachedIDs})
	}
	for _, ev := range rerun { // after Cached: clients expect that first
		emit(ev)
	}
	for _, n := range p.order {
		st := state[n]
		if st.done && n.wanted {
			res.Outputs[n.id] = st.outputs
			emit(events.Event{Type: events.Executed, Node: n.id, NodeType: n.info.def.Spec.Type, Output: outputJSON(st.outputs), FromCache: true})
		}
	}
	res.Cached = cachedIDs

	// Schedule the rest: a node starts when all its dependencies have values.
	type doneMsg struct {
		n    *planNode
		outs *pb.Outputs
		err  error
		dur  time.Duration
	}
	doneCh := make(chan doneMsg)
	running := 0
	pending := map[*planNode]bool{}
	for _, n := range p.order {
		if !state[n].done && !state[n].failed {
			pending[n] = true
		}
	}
	for n := range pending {
		for _, d := range n.deps {
			state[d].users++
		}
	}
	rel, _ := e.runner.(Releaser)
	// The run lets go of a node's outputs once no dependent will read them
	// (each finished, failed or was skipped) and nobody wants them.
	letGo := func(n *planNode) {
		st := state[n]
		if st.hold == nil || st.let || st.users > 0 || n.wanted {
			return
		}
		st.let = true
		st.hold.drop()
	}
	settled := func(n *planNode) {
		for _, d := range n.deps {
			state[d].users--
			letGo(d)
		}
	}
	// Fingerprint failures count as failures of their node.
	for _, n := range p.order {
		if state[n].failed {
			e.skipDependents(n, state, pending, res, settled)
		}
	}
	ready := func(n *planNode) bool {
		for _, d := range n.deps {
			if !state[d].done {
				return false
			}
		}
		return true
	}
	for len(pending) > 0 || running > 0 {
		if ctx.Err() == nil {
			for _, n := range p.order {
				if running >= e.parallel {
					break
				}
				if !pending[n] || !ready(n) {
					continue
				}
				delete(pending, n)
				running++
				req := &pb.ExecuteRequest{NodeType: n.info.def.Spec.Type, NodeId: n.id, PromptId: opts.PromptID, Dirs: e.dirs, Inputs: map[string]*pb.Value{}}
				for name, v := range n.literals {
					req.Inputs[name] = v
				}
				for name, l := range n.links {
					if v, ok := state[l.src].outputs.GetValues()[l.output]; ok {
						req.Inputs[name] = v
					}
				}
				if n.info.def.Spec.OutputNode {
					if wfJSON == nil {
						wfJSON, _ = p.Workflow.Marshal()
					}
					req.Workflow = wfJSON
				}
				emit(events.Event{Type: events.Executing, Node: n.id, NodeType: req.NodeType})
				go func(n *planNode) {
					start := time.Now()
					outs, err := e.runner.Execute(ctx, req, func(ev *pb.ExecuteEvent) { e.forward(n, ev, emit) })
					if err == nil {
						err = checkOutputs(n, outs)
						if err != nil && rel != nil {
							rel.Release(outs.GetValues())
						}
					}
					doneCh <- doneMsg{n, outs, err, time.Since(start)}
				}(n)
			}
		}
		if running == 0 {
			break // interrupted, or nothing left that can run
		}
		m := <-doneCh
		running--
		st := state[m.n]
		settled(m.n)
		if m.err != nil {
			st.failed = true
			if ctx.Err() != nil {
				res.Skipped = append(res.Skipped, m.n.id)
			} else {
				res.Failed[m.n.id] = m.err
			}
			e.skipDependents(m.n, state, pending, res, settled)
			continue
		}
		st.outputs, st.done = m.outs, true
		if rel != nil {
			st.hold = newHold(rel, m.outs)
		}
		res.Executed = append(res.Executed, m.n.id)
		if useCache && cacheable(m.n.info.def.Spec) {
			// In the background: the run does not wait for the cache.
			h := st.hold
			h.add()
			e.writes.put(e.cache, st.key, m.outs, m.n.info.def.Spec.Type, h.drop)
		}
		if m.n.wanted {
			res.Outputs[m.n.id] = m.outs
		}
		emit(events.Event{Type: events.Executed, Node: m.n.id, NodeType: m.n.info.def.Spec.Type, Output: outputJSON(m.outs), Duration: m.dur})
		letGo(m.n) // a node nothing uses
	}
	// What Run returns owns its bytes; the run lets go of everything else.
	for _, n := range p.order {
		st := state[n]
		if st.hold == nil || st.let {
			continue
		}
		if n.wanted && opts.UIOnly {
			res.Outputs[n.id] = &pb.Outputs{Ui: st.outputs.GetUi()}
		} else if n.wanted {
			values, err := rel.Detach(st.outputs.GetValues())
			if err != nil {
				delete(res.Outputs, n.id)
				res.Failed[n.id] = err
			} else {
				res.Outputs[n.id] = &pb.Outputs{Values: values, Ui: st.outputs.GetUi()}
			}
		}
		st.let = true
		st.hold.drop()
	}
	for n := range pending {
		res.Skipped = append(res.Skipped, n.id)
	}
	sort.Strings(res.Skipped)
	completed := append(append([]string{}, res.Cached...), res.Executed...)

	if ctx.Err() != nil {
		emit(events.Event{Type: events.Interrupted, Completed: completed, Skipped: res.Skipped})
		return res, ErrInterrupted
	}
	if len(res.Failed) > 0 {
		var first *NodeError
		for _, n := range p.order { // the first in plan order, for a stable report
			if err, ok := res.Failed[n.id]; ok {
				first = &NodeError{Node: n.id, NodeType: n.info.def.Spec.Type, Err: err}
				break
			}
		}
		emit(events.Event{Type: events.Error, Node: first.Node, NodeType: first.NodeType, Err: first.Err.Error(), Completed: completed, Skipped: res.Skipped})
		return res, first
	}
	emit(events.Event{Type: events.Success})
	return res, nil
}

// cacheable says whether a node's result is stored: a deterministic node's,
// unless it has side effects that the engine cannot check (a result it would
// never reuse).
func cacheable(s *pb.NodeSpec) bool {
	return s.Deterministic && (!s.SideEffects || s.Verify)
}

// loadCached marks the nodes whose results are in the cache as done and
// reads only the results something uses: those of wanted nodes and those that
// feed a node that must run. A cached image upstream of a changed prompt is
// never read. (Entries known but not read are not refreshed in the cache's
// LRU order; an evicted one only costs a re-run.) A result that cannot be read
// turns its node into one that runs, whose own inputs may then be needed, so
// this repeats until nothing changes.
//
// A node with side effects is never served from the cache blindly: it counts
// as cached only when its plugin confirms that the effect of the cached run
// (the files it wrote) is still in place; otherwise it runs again, with its
// inputs from the cache, and a log event for it says why.
func (e *Engine) loadCached(ctx context.Context, p *Plan, state map[*planNode]*nodeState) ([]string, []events.Event) {
	var notes []events.Event
	hit := map[*planNode]bool{}
	for _, n := range p.order {
		st := state[n]
		if st.failed || !cacheable(n.info.def.Spec) {
			continue
		}
		if _, ok := e.cache.Info(st.key); !ok {
			continue
		}
		if n.info.def.Spec.SideEffects {
			outs, reason := e.verifyCached(ctx, n, st.key)
			if outs == nil {
				notes = append(notes, events.Event{Type: events.Log, Node: n.id, NodeType: n.info.def.Spec.Type, Level: pb.Log_INFO.String(),
					Message: "runs again instead of coming from the cache: " + reason})
				continue
			}
			st.outputs = outs
		}
		hit[n] = true
	}
	needed := func(n *planNode) bool {
		if n.wanted {
			return true
		}
		for _, d := range n.dependents {
			if !hit[d] && !state[d].failed {
				return true
			}
		}
		return false
	}
	for changed := true; changed; {
		changed = false
		for _, n := range p.order {
			st := state[n]
			if !hit[n] || st.outputs != nil || !needed(n) {
				continue
			}
			b, ok, err := e.cache.Get(st.key)
			outs := &pb.Outputs{}
			if err != nil || !ok || proto.Unmarshal(b, outs) != nil {
				hit[n], changed = false, true // unreadable or gone: run the node again
				continue
			}
			st.outputs = outs
		}
	}
	var ids []string
	for _, n := range p.order {
		if hit[n] {
			state[n].done = true
			ids = append(ids, n.id)
		}
	}
	return ids, notes
}

// verifyCached reads a side-effect node's cached result and asks its plugin
// whether the effect is still in place. It returns the result when it is, and
// otherwise nil and the reason.
func (e *Engine) verifyCached(ctx context.Context, n *planNode, k cache.Key) (*pb.Outputs, string) {
	b, ok, err := e.cache.Get(k)
	outs := &pb.Outputs{}
	if err != nil || !ok || proto.Unmarshal(b, outs) != nil {
		return nil, "its cached result could not be read"
	}
	// The plugin checks names and records, not pixels: tensors stay here.
	check := &pb.Outputs{Ui: outs.Ui, Values: map[string]*pb.Value{}}
	for name, v := range outs.Values {
		if _, isT := v.Kind.(*pb.Value_Tensor); !isT {
			check.Values[name] = v
		}
	}
	resp, err := e.runner.Verify(ctx, &pb.VerifyRequest{NodeType: n.info.def.Spec.Type, Inputs: n.literals, Dirs: e.dirs, Outputs: check})
	switch {
	case err != nil:
		return nil, "its plugin could not check the cached result: " + err.Error()
	case !resp.GetInPlace():
		reason := resp.GetReason()
		if reason == "" {
			reason = "its plugin says the cached result's effect is not in place"
		}
		return nil, reason
	}
	return outs, ""
}

// skipDependents marks what depends on a failed node as skipped; settled is
// told of each, as none will read its inputs.
func (e *Engine) skipDependents(n *planNode, state map[*planNode]*nodeState, pending map[*planNode]bool, res *Result, settled func(*planNode)) {
	for _, d := range n.dependents {
		if pending[d] {
			delete(pending, d)
			state[d].failed = true
			res.Skipped = append(res.Skipped, d.id)
			settled(d)
			e.skipDependents(d, state, pending, res, settled)
		}
	}
}

func (e *Engine) forward(n *planNode, ev *pb.ExecuteEvent, emit func(events.Event)) {
	base := events.Event{Node: n.id, NodeType: n.info.def.Spec.Type}
	switch x := ev.Event.(type) {
	case *pb.ExecuteEvent_Progress:
		base.Type, base.Value, base.Max, base.Text = events.Progress, x.Progress.Value, x.Progress.Max, x.Progress.Text
	case *pb.ExecuteEvent_Preview:
		base.Type, base.Format, base.Data = events.Preview, x.Preview.Format, x.Preview.Data
	case *pb.ExecuteEvent_Log:
		base.Type, base.Level, base.Message = events.Log, x.Log.Level.String(), x.Log.Message
	default:
		return
	}
	emit(base)
}

// checkOutputs holds plugins to their specs: every declared output present and
// of the declared kind, so a buggy plugin fails at its own node, not downstream.
func checkOutputs(n *planNode, outs *pb.Outputs) error {
	if outs == nil {
		return errors.New("plugin returned no outputs")
	}
	for _, o := range n.info.def.Spec.Outputs {
		v, ok := outs.Values[o.Name]
		if !ok {
			return fmt.Errorf("plugin did not return declared output %q", o.Name)
		}
		t := port.Type(o.Type)
		bad := false
		switch t.Base() {
		case port.Int:
			_, isInt := v.Kind.(*pb.Value_Int)
			bad = !isInt
		case port.Float:
			_, isF := v.Kind.(*pb.Value_Float)
			_, isI := v.Kind.(*pb.Value_Int)
			bad = !isF && !isI
		case port.String, port.Enum:
			_, isS := v.Kind.(*pb.Value_String_)
			bad = !isS
		case port.Boolean:
			_, isB := v.Kind.(*pb.Value_Bool)
			bad = !isB
		case port.Image, port.Latent, port.Conditioning, port.FaceEmbedding, port.Mask:
			tv, isT := v.Kind.(*pb.Value_Tensor)
			if !isT && !value.IsNull(v) {
				bad = true
			} else if isT {
				if err := value.CheckTensor(tv.Tensor); err != nil {
					return fmt.Errorf("output %q: %v", o.Name, err)
				}
			}
		}
		if bad {
			return fmt.Errorf("output %q is declared %s but the plugin returned %s", o.Name, o.Type, value.Kind(v))
		}
	}
	return nil
}

func outputJSON(o *pb.Outputs) map[string]any {
	if o == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range o.Ui {
		out[k] = value.ToJSON(v)
	}
	return out
}

// key derives a node's cache key, Merkle style: its type and code version, its
// literal inputs, the keys of what it links to, and its fingerprint.
func (e *Engine) key(ctx context.Context, n *planNode, state map[*planNode]*nodeState) (cache.Key, error) {
	spec := n.info.def.Spec
	if !spec.Deterministic {
		var k cache.Key
		_, _ = rand.Read(k[:])
		return k, nil
	}
	h := sha256.New()
	write := func(parts ...string) {
		for _, s := range parts {
			fmt.Fprintf(h, "%d:%s;", len(s), s)
		}
	}
	write("face0-cache-v1", spec.Type, spec.Version, n.info.def.Pack, n.info.def.Build)
	lit, err := json.Marshal(n.litJSON) // map keys sorted; numbers kept as written
	if err != nil {
		return cache.Key{}, err
	}
	write("literals", string(lit))
	for _, name := range sortedKeys(n.links) {
		l := n.links[name]
		write("link", name, state[l.src].key.String(), l.output)
	}
	if spec.Fingerprint {
		req := &pb.FingerprintRequest{NodeType: spec.Type, Inputs: n.literals, Dirs: e.dirs}
		fp, err := e.runner.Fingerprint(ctx, req)
		if err != nil {
			return cache.Key{}, err
		}
		write("fingerprint", string(fp))
	}
	if spec.SideEffects {
		// Where the effect lands is part of what the node does: a run into
		// another output folder is another result.
		d := e.dirs
		write("dirs", d.GetInput(), d.GetOutput(), d.GetTemp(), d.GetModels())
	}
	var k cache.Key
	h.Sum(k[:0])
	return k, nil
}
