package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
)

// onWorkerKey takes in a change of the workers bucket.
func (r *Runner) onWorkerKey(u jetstream.KeyValueEntry) {
	key := u.Key()
	deleted := u.Operation() != jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, "w."):
		id := strings.TrimPrefix(key, "w.")
		r.mu.Lock()
		defer r.mu.Unlock()
		if deleted {
			if m, ok := r.workers[id]; ok {
				delete(r.workers, id)
				r.logf("worker %s (%s) left", m.beat.Name, id)
			}
			return
		}
		var b cluster.Beat
		if json.Unmarshal(u.Value(), &b) != nil {
			return
		}
		if time.Since(u.Created()) > 10*r.o.DeadAfter && r.workers[id] == nil {
			return // an old heartbeat of a worker long gone
		}
		m, known := r.workers[id]
		if !known {
			m = &member{}
			r.workers[id] = m
			gpu := "no GPU"
			if b.GPU != "" {
				gpu = "GPU " + b.GPU
			}
			r.logf("worker %s (%s) joined: %d slot(s), %s, group %s", b.Name, id, b.Slots, gpu, b.Group)
		}
		m.beat, m.seen, m.rev = b, time.Now(), u.Revision()
	case strings.HasPrefix(key, "caps."):
		id := strings.TrimPrefix(key, "caps.")
		if deleted {
			return
		}
		var c cluster.Caps
		if err := json.Unmarshal(u.Value(), &c); err != nil {
			r.logf("group %s: capabilities cannot be read: %v", id, err)
			return
		}
		m, err := cluster.NewMatcher(&c)
		if err != nil {
			r.logf("group %s: %v", id, err)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		g := r.groups[id]
		if g == nil {
			g = &group{id: id}
			r.groups[id] = g
		}
		g.m = m
	}
}

// liveGroups are the groups with at least one live worker; r.mu is held.
func (r *Runner) liveGroups() map[string]bool {
	live := map[string]bool{}
	for _, m := range r.workers {
		live[m.beat.Group] = true
	}
	return live
}

// pick chooses the group to run a node: among the live groups that can run
// it, the one with the most free slots (its workers' slots less the jobs
// this server has out there). It returns "" and why when none can.
func (r *Runner) pick(nodeType string, inputs map[string]*pb.Value, want *engine.NodeDef, avoid string) (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slots := map[string]int{}
	for _, m := range r.workers {
		slots[m.beat.Group] += max(1, m.beat.Slots)
	}
	if len(slots) == 0 {
		return "", "no worker is connected"
	}
	best, bestFree := "", 0
	var why []string
	ids := make([]string, 0, len(slots))
	for id := range slots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := r.groups[id]
		if g == nil || g.m == nil || id == avoid {
			continue
		}
		if err := g.m.Can(nodeType, inputs, want); err != nil {
			why = append(why, r.groupName(id)+" "+err.Error())
			continue
		}
		free := slots[id] - g.inflight
		if best == "" || free > bestFree {
			best, bestFree = id, free
		}
	}
	if best == "" {
		return "", strings.Join(why, "; ")
	}
	return best, ""
}

// groupName names a group by its workers, for messages; r.mu is held.
func (r *Runner) groupName(id string) string {
	var names []string
	for _, m := range r.workers {
		if m.beat.Group == id {
			names = append(names, m.beat.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 1 {
		return "worker " + names[0]
	}
	return "workers " + strings.Join(names, ", ")
}

// refreshLocal learns what this machine's host can run.
func (r *Runner) refreshLocal() {
	// As if with a GPU: the GPU rule is for choosing among workers; this
	// machine's own plugins judge a device themselves, as they do without
	// workers (a cuda node on a server with a GPU runs there).
	caps, err := cluster.NewCaps(r.local.Nodes(), r.local.Types(), nil, true)
	var m *cluster.Matcher
	if err == nil {
		m, err = cluster.NewMatcher(caps)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.logf("this server's own nodes: %v", err)
		return
	}
	r.localM = m
}

// localCan says why this machine cannot run the node, or nil.
func (r *Runner) localCan(req *pb.ExecuteRequest) error {
	r.mu.Lock()
	m := r.localM
	r.mu.Unlock()
	if m == nil {
		return errors.New("this server's nodes are unknown")
	}
	return m.Can(req.NodeType, req.Inputs, nil)
}

// def is the definition the catalog holds for a node type (see Nodes).
func (r *Runner) def(nodeType string) (engine.NodeDef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.defs[nodeType]; ok {
		return d, true
	}
	if r.localM != nil {
		return r.localM.Def(nodeType)
	}
	return engine.NodeDef{}, false
}

// Nodes are the node types this server can run, here or on a live worker:
// the catalog the server validates workflows against. A type both here and
// on workers has this machine's definition, with the choices of its inputs
// (models, files) joined with the workers' of the same version, so that a
// workflow may name a model only a worker has.
func (r *Runner) Nodes() []engine.NodeDef {
	r.refreshLocal()
	local := r.local.Nodes()
	out := make([]engine.NodeDef, 0, len(local))
	at := map[string]int{}
	for _, d := range local {
		at[d.Spec.Type] = len(out)
		out = append(out, engine.NodeDef{Spec: proto.Clone(d.Spec).(*pb.NodeSpec), Pack: d.Pack, Build: d.Build})
	}
	r.mu.Lock()
	live := r.liveGroups()
	var ms []*cluster.Matcher
	for _, id := range sortedKeys(live) {
		if g := r.groups[id]; g != nil && g.m != nil {
			ms = append(ms, g.m)
		}
	}
	r.mu.Unlock()
	for _, m := range ms {
		defs, _, err := m.Caps().Defs()
		if err != nil {
			continue
		}
		for _, d := range defs {
			i, ok := at[d.Spec.Type]
			if !ok {
				at[d.Spec.Type] = len(out)
				out = append(out, d)
				continue
			}
			have := out[i]
			if have.Pack == d.Pack && have.Spec.Version == d.Spec.Version && cluster.PackVersion(have.Build) == cluster.PackVersion(d.Build) {
				mergeChoices(have.Spec, d.Spec)
			}
		}
	}
	defs := make(map[string]engine.NodeDef, len(out))
	for _, d := range out {
		defs[d.Spec.Type] = d
	}
	r.mu.Lock()
	r.defs = defs
	r.mu.Unlock()
	return out
}

// Types are the port types of this machine's packs and the workers'.
func (r *Runner) Types() []*pb.TypeSpec {
	out := append([]*pb.TypeSpec(nil), r.local.Types()...)
	seen := map[string]bool{}
	for _, t := range out {
		seen[t.Name] = true
	}
	r.mu.Lock()
	var ms []*cluster.Matcher
	for id := range r.liveGroups() {
		if g := r.groups[id]; g != nil && g.m != nil {
			ms = append(ms, g.m)
		}
	}
	r.mu.Unlock()
	for _, m := range ms {
		_, types, err := m.Caps().Defs()
		if err != nil {
			continue
		}
		for _, t := range types {
			if !seen[t.Name] {
				seen[t.Name] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// mergeChoices adds to dst's inputs the enum choices and type parameters of
// src's (the same node on another machine).
func mergeChoices(dst, src *pb.NodeSpec) {
	from := map[string]*pb.PortSpec{}
	for _, in := range src.Inputs {
		from[in.Name] = in
	}
	for _, in := range dst.Inputs {
		o := from[in.Name]
		if o == nil {
			continue
		}
		if o.Param != nil && in.Param != nil && o.Param.FromInput == in.Param.FromInput {
			for k, v := range o.Param.Map {
				if _, ok := in.Param.Map[k]; !ok {
					if in.Param.Map == nil {
						in.Param.Map = map[string]string{}
					}
					in.Param.Map[k] = v
				}
			}
		}
		if in.Schema == "" || o.Schema == "" {
			continue
		}
		var a, b map[string]any
		if json.Unmarshal([]byte(in.Schema), &a) != nil || json.Unmarshal([]byte(o.Schema), &b) != nil {
			continue
		}
		ea, okA := a["enum"].([]any)
		eb, okB := b["enum"].([]any)
		if !okA || !okB {
			continue
		}
		have := map[string]bool{}
		for _, v := range ea {
			k, _ := json.Marshal(v)
			have[string(k)] = true
		}
		added := false
		for _, v := range eb {
			k, _ := json.Marshal(v)
			if !have[string(k)] {
				ea, added = append(ea, v), true
			}
		}
		if !added {
			continue
		}
		a["enum"] = ea
		if s, err := json.Marshal(a); err == nil {
			in.Schema = string(s)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Workers lists the live workers.
func (r *Runner) Workers() []cluster.Beat {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]cluster.Beat, 0, len(r.workers))
	for _, m := range r.workers {
		out = append(out, m.beat)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].Worker < out[j].Worker
	})
	return out
}

// Fingerprint asks the machine that can run the node what its result
// depends on: here when this machine can, else a worker of a capable group.
func (r *Runner) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	if r.localCan(&pb.ExecuteRequest{NodeType: req.NodeType, Inputs: req.Inputs}) == nil {
		return r.local.Fingerprint(ctx, req)
	}
	data, err := r.ask(ctx, req.NodeType, req.Inputs, "fingerprint", req)
	return data, err
}

// Verify asks the machine that ran a node with side effects whether its
// effect is still in place.
func (r *Runner) Verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	if r.localCan(&pb.ExecuteRequest{NodeType: req.NodeType, Inputs: req.Inputs}) == nil {
		return r.local.Verify(ctx, req)
	}
	data, err := r.ask(ctx, req.NodeType, req.Inputs, "verify", req)
	if err != nil {
		return nil, err
	}
	resp := &pb.VerifyResponse{}
	return resp, proto.Unmarshal(data, resp)
}

// ask puts a quick question to a group that can run the node.
func (r *Runner) ask(ctx context.Context, nodeType string, inputs map[string]*pb.Value, what string, req proto.Message) ([]byte, error) {
	want, known := r.def(nodeType)
	var wantp *engine.NodeDef
	if known {
		wantp = &want
	}
	g, why := r.pick(nodeType, inputs, wantp, "")
	if g == "" {
		// Let this machine's plugin say what is wrong.
		switch q := req.(type) {
		case *pb.FingerprintRequest:
			if _, ok := r.localM.Def(nodeType); ok {
				return r.local.Fingerprint(ctx, q)
			}
		}
		return nil, fmt.Errorf("no connected worker can run node %s (%s)", nodeType, why)
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		reply, err := r.bus.NC.RequestWithContext(qctx, cluster.RPCSubject(g, what), body)
		if errors.Is(err, nats.ErrNoResponders) && qctx.Err() == nil {
			time.Sleep(100 * time.Millisecond) // a worker switching groups
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ask a worker for the %s of node %s: %w", what, nodeType, err)
		}
		if msg := reply.Header.Get(cluster.HdrRPCError); msg != "" {
			return nil, errors.New(msg)
		}
		return reply.Data, nil
	}
}
