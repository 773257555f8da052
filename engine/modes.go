package engine

import (
	"fmt"

	"github.com/face0/face0/engine/port"
	"github.com/face0/face0/engine/workflow"
)

// Muted and bypassed nodes (workflow.ModeMuted, workflow.ModeBypassed) never
// run. Before validation the workflow is rewritten without them, as ComfyUI's
// editor does before it submits a prompt:
//
//   - a link from a muted node is dropped: the input takes its default, or is
//     reported missing, naming the muted node;
//   - a link from output k of a bypassed node is taken from the bypassed
//     node's input k if that input has the output's type, else from its first
//     input of that type (in spec order); if that input is not linked, the
//     link is dropped as for a muted node. Chains of bypassed nodes are
//     followed.
//
// The original workflow, modes and all, is what the plan keeps (and what
// saved images carry).

// modeNote says why an input lost its link, for the "missing" message.
type modeNote map[string]string // "node\x00input" -> reason

// applyModes returns w without its muted and bypassed nodes, the reasons
// inputs lost their links, and problems that stop the rewrite (a bypassed
// node of an unknown type cannot say which input to pass on).
func (c *Catalog) applyModes(w *workflow.Workflow) (*workflow.Workflow, modeNote, []Problem) {
	off := map[string]*workflow.Node{}
	for i := range w.Nodes {
		if m := w.Nodes[i].Mode; m == workflow.ModeMuted || m == workflow.ModeBypassed {
			off[w.Nodes[i].ID] = &w.Nodes[i]
		}
	}
	if len(off) == 0 {
		return w, nil, nil
	}
	notes := modeNote{}
	var probs []Problem
	reported := map[string]bool{}
	// resolve follows a link until it reaches a node that runs; nil when the
	// link is dropped (why says why).
	var resolve func(l workflow.Link, want port.Type, depth int) (*workflow.Link, string)
	resolve = func(l workflow.Link, want port.Type, depth int) (*workflow.Link, string) {
		src, ok := off[l.Node]
		if !ok {
			return &l, ""
		}
		if src.Mode == workflow.ModeMuted {
			return nil, fmt.Sprintf("its link came from node %s, which is muted", l.Node)
		}
		if depth > len(w.Nodes) {
			return nil, "its link goes round a cycle of bypassed nodes"
		}
		info, known := c.defs[src.Type]
		if !known {
			if !reported[src.ID] {
				reported[src.ID] = true
				probs = append(probs, Problem{Node: src.ID, NodeType: src.Type, Kind: KindUnknownNode,
					Message: fmt.Sprintf("unknown node type %q: a bypassed node passes an input on by its type, which only an installed node type tells; mute the node instead, or install its plugin", src.Type)})
			}
			return nil, fmt.Sprintf("its link came from node %s, which is bypassed", l.Node)
		}
		spec := info.def.Spec
		outIdx := l.Index
		if l.Output != "" {
			i, ok := info.outputs[l.Output]
			if !ok {
				return &l, "" // validation reports the missing output
			}
			outIdx = i
		}
		if outIdx < len(spec.Outputs) {
			want = port.Type(spec.Outputs[outIdx].Type)
		}
		// The input at the output's position first, then the others in order.
		order := make([]int, 0, len(spec.Inputs)+1)
		if outIdx < len(spec.Inputs) {
			order = append(order, outIdx)
		}
		for i := range spec.Inputs {
			if i != outIdx {
				order = append(order, i)
			}
		}
		for _, i := range order {
			in := spec.Inputs[i]
			if port.Type(in.Type).Base() != want.Base() {
				continue
			}
			v, ok := src.Inputs[in.Name]
			if !ok || v.Link == nil {
				return nil, fmt.Sprintf("its link came from node %s, which is bypassed and has no link on its %s input %q", l.Node, in.Type, in.Name)
			}
			return resolve(*v.Link, want, depth+1)
		}
		return nil, fmt.Sprintf("its link came from node %s, which is bypassed and has no %s input to pass on", l.Node, want)
	}

	out := &workflow.Workflow{Version: w.Version, Name: w.Name, Description: w.Description, UI: w.UI}
	for _, n := range w.Nodes {
		if off[n.ID] != nil {
			continue
		}
		cp := n
		cp.Inputs = make(map[string]workflow.Input, len(n.Inputs))
		for name, v := range n.Inputs {
			if v.Link == nil || off[v.Link.Node] == nil {
				cp.Inputs[name] = v
				continue
			}
			want := port.Any
			if info, ok := c.defs[n.Type]; ok {
				if ii, ok := info.inputs[name]; ok {
					want = port.Type(ii.spec.Type)
				}
			}
			l, why := resolve(*v.Link, want, 0)
			if l == nil {
				notes[n.ID+"\x00"+name] = why
				continue
			}
			cp.Inputs[name] = workflow.Input{Link: l}
		}
		out.Nodes = append(out.Nodes, cp)
	}
	return out, notes, probs
}
