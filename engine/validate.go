package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/face0/face0/engine/port"
	"github.com/face0/face0/engine/workflow"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Problem kinds, stable strings for machines (the server's node_errors "type").
const (
	KindUnknownNode     = "unknown_node_type"
	KindMissingInput    = "required_input_missing"
	KindUnknownInput    = "unknown_input"
	KindBadLink         = "bad_linked_input"
	KindTypeMismatch    = "return_type_mismatch"
	KindInvalidLiteral  = "value_not_valid"
	KindLinkOnly        = "link_required"
	KindCycle           = "dependency_cycle"
	KindNoOutputs       = "prompt_no_outputs"
	KindUnknownOutputID = "unknown_output_node"
)

// Problem is one reason a workflow cannot run.
type Problem struct {
	Node     string `json:"node,omitempty"`
	NodeType string `json:"node_type,omitempty"`
	Input    string `json:"input,omitempty"`
	Kind     string `json:"kind"`
	Message  string `json:"message"`
}

func (p Problem) String() string {
	var where []string
	if p.Node != "" {
		n := "node " + p.Node
		if p.NodeType != "" {
			n += " (" + p.NodeType + ")"
		}
		where = append(where, n)
	}
	if p.Input != "" {
		where = append(where, "input "+p.Input)
	}
	if len(where) == 0 {
		return p.Message
	}
	return strings.Join(where, ", ") + ": " + p.Message
}

// ValidationError lists every problem found, not just the first.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid workflow: " + e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid workflow: %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// NodeErrors is the ComfyUI /prompt "node_errors" shape:
// {id: {"errors": [{"type","message","details","extra_info":{"input_name"}}], "dependent_outputs": [], "class_type"}}.
func (e *ValidationError) NodeErrors() map[string]any {
	out := map[string]any{}
	for _, p := range e.Problems {
		if p.Node == "" {
			continue
		}
		entry, ok := out[p.Node].(map[string]any)
		if !ok {
			entry = map[string]any{"errors": []any{}, "dependent_outputs": []string{}, "class_type": p.NodeType}
			out[p.Node] = entry
		}
		item := map[string]any{"type": p.Kind, "message": p.Message, "details": p.String(), "extra_info": map[string]any{}}
		if p.Input != "" {
			item["extra_info"] = map[string]any{"input_name": p.Input}
		}
		entry["errors"] = append(entry["errors"].([]any), item)
	}
	return out
}

// Plan is a validated workflow, ready to run: the nodes the wanted outputs
// need, in a topological order, with literals converted and defaults filled.
type Plan struct {
	Workflow *workflow.Workflow
	nodes    map[string]*planNode
	order    []*planNode
	catalog  *Catalog
}

type planNode struct {
	id         string
	info       *nodeInfo
	literals   map[string]*pb.Value // converted, defaults filled
	litJSON    map[string]any       // same, as JSON values, for cache keys
	links      map[string]planLink
	deps       []*planNode
	dependents []*planNode
	wanted     bool // its result is asked for
}

type planLink struct {
	src    *planNode
	output string
}

// NodeIDs lists the planned nodes in execution order.
func (p *Plan) NodeIDs() []string {
	out := make([]string, len(p.order))
	for i, n := range p.order {
		out[i] = n.id
	}
	return out
}

// Compile validates w against the catalog and plans the run of the nodes that
// the wanted outputs need. With no outputs given, the output nodes (SaveImage
// and the like) are wanted, or, if there are none, every node nothing depends on.
func (c *Catalog) Compile(w *workflow.Workflow, outputs []string) (*Plan, error) {
	var probs []Problem
	add := func(p Problem) { probs = append(probs, p) }
	orig := w
	w, dropped, modeProbs := c.applyModes(w)
	probs = append(probs, modeProbs...)
	nodes := map[string]*planNode{}
	var all []*planNode
	for i := range w.Nodes {
		n := &w.Nodes[i]
		info, ok := c.defs[n.Type]
		if !ok {
			msg := fmt.Sprintf("unknown node type %q", n.Type)
			if s := suggest(n.Type, c.order); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (is its plugin installed? `face0 nodes` lists the known types)"
			}
			add(Problem{Node: n.ID, NodeType: n.Type, Kind: KindUnknownNode, Message: msg})
			continue
		}
		pn := &planNode{id: n.ID, info: info, literals: map[string]*pb.Value{}, litJSON: map[string]any{}, links: map[string]planLink{}}
		nodes[n.ID] = pn
		all = append(all, pn)
	}
	// Second pass: inputs, now that every node's type is known.
	for i := range w.Nodes {
		n := &w.Nodes[i]
		pn := nodes[n.ID]
		if pn == nil {
			continue
		}
		spec := pn.info.def.Spec
		prob := func(input, kind, format string, args ...any) {
			add(Problem{Node: n.ID, NodeType: n.Type, Input: input, Kind: kind, Message: fmt.Sprintf(format, args...)})
		}
		for _, name := range sortedKeys(n.Inputs) {
			if _, ok := pn.info.inputs[name]; !ok {
				msg := fmt.Sprintf("%s has no input %q", n.Type, name)
				if s := suggest(name, inputNames(spec)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				prob(name, KindUnknownInput, "%s", msg)
			}
		}
		for _, in := range spec.Inputs {
			ii := pn.info.inputs[in.Name]
			v, given := n.Inputs[in.Name]
			switch {
			case !given || (v.Link == nil && v.Value == nil):
				if ii.hasDef {
					c.setLiteral(pn, in, ii, ii.def, prob)
				} else if !in.Optional {
					msg := fmt.Sprintf("required input %q (%s) is missing", in.Name, in.Type)
					if why := dropped[n.ID+"\x00"+in.Name]; why != "" {
						msg += ": " + why
					}
					prob(in.Name, KindMissingInput, "%s", msg)
				}
			case v.Link != nil:
				src, ok := nodes[v.Link.Node]
				if !ok {
					if w.Node(v.Link.Node) == nil {
						prob(in.Name, KindBadLink, "links to node %q, which is not in the workflow", v.Link.Node)
					} // else: that node's own problem (unknown type) is reported already
					continue
				}
				outName, outType, err := resolveOutput(src, *v.Link)
				if err != nil {
					prob(in.Name, KindBadLink, "%v", err)
					continue
				}
				pn.links[in.Name] = planLink{src: src, output: outName}
				_ = outType
			default:
				if in.LinkOnly || !port.Type(in.Type).Literal() {
					prob(in.Name, KindLinkOnly, "%s input must be linked to another node's output, not written as a value", port.A(port.Type(in.Type)))
					continue
				}
				c.setLiteral(pn, in, ii, v.Value, prob)
			}
		}
	}
	// Constraints between a node's inputs, now that its literals are known.
	for _, pn := range all {
		for _, in := range pn.info.def.Spec.Inputs {
			ii := pn.info.inputs[in.Name]
			v, ok := pn.litJSON[in.Name]
			if !ok || len(ii.rules) == 0 {
				continue
			}
			for _, r := range ii.rules {
				if r.when.Validate(pn.litJSON) == nil && r.then.Validate(v) != nil {
					add(Problem{Node: pn.id, NodeType: pn.info.def.Spec.Type, Input: in.Name, Kind: KindInvalidLiteral,
						Message: fmt.Sprintf("%s is %s: %s", in.Name, describe(v), r.message)})
				}
			}
		}
	}
	// Types of links, now that literals (which set type parameters) are known.
	for _, pn := range all {
		for name, l := range pn.links {
			in := pn.info.inputs[name].spec
			from := portType(l.src, l.src.info.def.Spec.Outputs[l.src.info.outputs[l.output]])
			to := portType(pn, in)
			if ok, why := port.Assignable(from, to); !ok {
				add(Problem{Node: pn.id, NodeType: pn.info.def.Spec.Type, Input: name, Kind: KindTypeMismatch,
					Message: fmt.Sprintf("linked to %s.%s: %s", l.src.id, l.output, why)})
			}
			pn.deps = append(pn.deps, l.src)
			l.src.dependents = append(l.src.dependents, pn)
		}
	}
	order, cyc := topoSort(all)
	if len(cyc) > 0 {
		names := strings.Join(cyc, ", ")
		if len(cyc) > 6 {
			names = fmt.Sprintf("%s and %d more", strings.Join(cyc[:5], ", "), len(cyc)-5)
		}
		add(Problem{Kind: KindCycle, Node: cyc[0], Message: fmt.Sprintf("the links form a cycle through nodes %s; a workflow must be acyclic", names)})
	}
	// What is wanted.
	var wanted []*planNode
	if len(outputs) > 0 {
		for _, id := range outputs {
			if pn, ok := nodes[id]; ok {
				wanted = append(wanted, pn)
			} else if o := orig.Node(id); o != nil && o.Mode != "" {
				add(Problem{Kind: KindUnknownOutputID, Message: fmt.Sprintf("requested output node %q is %s; it does not run", id, o.Mode)})
			} else if w.Node(id) == nil {
				add(Problem{Kind: KindUnknownOutputID, Message: fmt.Sprintf("requested output node %q is not in the workflow", id)})
			}
		}
	} else {
		for _, pn := range all {
			if pn.info.def.Spec.OutputNode {
				wanted = append(wanted, pn)
			}
		}
		if len(wanted) == 0 {
			for _, pn := range all {
				if len(pn.dependents) == 0 {
					wanted = append(wanted, pn)
				}
			}
		}
	}
	if len(orig.Nodes) == 0 {
		add(Problem{Kind: KindNoOutputs, Message: "the workflow has no nodes"})
	} else if len(w.Nodes) == 0 {
		add(Problem{Kind: KindNoOutputs, Message: "every node of the workflow is muted or bypassed"})
	}
	if len(probs) > 0 {
		sortProblems(probs, orig)
		return nil, &ValidationError{Problems: probs}
	}
	// Keep only what the wanted nodes need, in topological order.
	need := map[*planNode]bool{}
	var mark func(*planNode)
	mark = func(n *planNode) {
		if need[n] {
			return
		}
		need[n] = true
		for _, d := range n.deps {
			mark(d)
		}
	}
	for _, n := range wanted {
		n.wanted = true
		mark(n)
	}
	plan := &Plan{Workflow: orig, nodes: map[string]*planNode{}, catalog: c}
	for _, n := range order {
		if need[n] {
			plan.order = append(plan.order, n)
			plan.nodes[n.id] = n
		}
	}
	return plan, nil
}

func (c *Catalog) setLiteral(pn *planNode, in *pb.PortSpec, ii *inputInfo, v any, prob func(string, string, string, ...any)) {
	if ii.schema != nil {
		if err := ii.schema.Validate(v); err != nil {
			msg := schemaMessage(err, v)
			if ii.hint != "" {
				msg += "; " + ii.hint
			}
			prob(in.Name, KindInvalidLiteral, "%s", msg)
			return
		}
	} else if msg := basicLiteralCheck(port.Type(in.Type), v); msg != "" {
		prob(in.Name, KindInvalidLiteral, "%s", msg)
		return
	}
	pv, err := value.FromJSON(v)
	if err != nil {
		prob(in.Name, KindInvalidLiteral, "%v", err)
		return
	}
	if port.Type(in.Type).Base() == port.Float {
		// A FLOAT written as 1 stays a float on the wire.
		if i, ok := pv.Kind.(*pb.Value_Int); ok {
			pv = value.Float(float64(i.Int))
		}
	}
	pn.literals[in.Name] = pv
	pn.litJSON[in.Name] = v
}

// basicLiteralCheck is the type check for inputs whose plugin gave no schema.
func basicLiteralCheck(t port.Type, v any) string {
	switch t.Base() {
	case port.Int:
		n, ok := v.(json.Number)
		if !ok || strings.ContainsAny(n.String(), ".eE") {
			return fmt.Sprintf("expected an integer, got %s", describe(v))
		}
	case port.Float:
		if _, ok := v.(json.Number); !ok {
			return fmt.Sprintf("expected a number, got %s", describe(v))
		}
	case port.String, port.Enum:
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("expected a string, got %s", describe(v))
		}
	case port.Boolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("expected true or false, got %s", describe(v))
		}
	}
	return ""
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func schemaMessage(err error, v any) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var leaves []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			msg := kindMessage(e.ErrorKind)
			leaves = append(leaves, msg)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return fmt.Sprintf("value %s is not valid: %s", describe(v), strings.Join(leaves, "; "))
}

var printer = message.NewPrinter(language.English)

// kindMessage words number bounds plainly (the library's localised form writes
// 1×10⁶ and ∞); everything else uses the library's English text.
func kindMessage(k jsonschema.ErrorKind) string {
	num := func(r *big.Rat) string {
		if r.IsInt() {
			s := r.Num().String()
			if len(s) > 24 {
				return s[:12] + "...(" + fmt.Sprint(len(s)) + " digits)"
			}
			return s
		}
		f, _ := r.Float64()
		return fmt.Sprint(f)
	}
	switch k := k.(type) {
	case *kind.Maximum:
		return fmt.Sprintf("must be at most %s, got %s", num(k.Want), num(k.Got))
	case *kind.Minimum:
		return fmt.Sprintf("must be at least %s, got %s", num(k.Want), num(k.Got))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("must be less than %s, got %s", num(k.Want), num(k.Got))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("must be greater than %s, got %s", num(k.Want), num(k.Got))
	case *kind.Enum:
		if len(k.Want) == 0 {
			return "there is nothing to choose from yet"
		}
		// A long list (an input folder's images) is named in part.
		const shown = 5
		var names []string
		for i, w := range k.Want {
			if i == shown && len(k.Want) > shown+1 {
				break
			}
			names = append(names, "'"+strings.Trim(describe(w), `"`)+"'")
		}
		if len(names) < len(k.Want) {
			return fmt.Sprintf("must be one of %d choices: %s and %d more", len(k.Want), strings.Join(names, ", "), len(k.Want)-len(names))
		}
		return "must be one of " + strings.Join(names, ", ")
	case *kind.MaxLength:
		return fmt.Sprintf("is %d characters long, the maximum is %d (maxLength)", k.Got, k.Want)
	}
	return k.LocalizedString(printer)
}

func resolveOutput(src *planNode, l workflow.Link) (string, port.Type, error) {
	outs := src.info.def.Spec.Outputs
	if l.Output == "" {
		if l.Index >= len(outs) {
			return "", "", fmt.Errorf("links to output %d of node %s (%s), which has %d outputs", l.Index, src.id, src.info.def.Spec.Type, len(outs))
		}
		return outs[l.Index].Name, port.Type(outs[l.Index].Type), nil
	}
	i, ok := src.info.outputs[l.Output]
	if !ok {
		names := make([]string, len(outs))
		for j, o := range outs {
			names[j] = o.Name
		}
		return "", "", fmt.Errorf("node %s (%s) has no output %q; its outputs are: %s", src.id, src.info.def.Spec.Type, l.Output, strings.Join(names, ", "))
	}
	return l.Output, port.Type(outs[i].Type), nil
}

// portType is a port's type with its parameter resolved from the node's literals.
func portType(n *planNode, p *pb.PortSpec) port.Type {
	t := port.Type(p.Type)
	if p.Param == nil || p.Param.FromInput == "" {
		return t
	}
	lit, ok := n.literals[p.Param.FromInput]
	if !ok {
		return t
	}
	s, err := value.AsString(lit)
	if err != nil {
		return t
	}
	if param, ok := p.Param.Map[s]; ok {
		return t.WithParam(param)
	}
	return t
}

// topoSort orders nodes so that each comes after its dependencies (Kahn), ties
// broken by workflow order. Nodes left over are on or behind a cycle.
func topoSort(all []*planNode) (order []*planNode, cycle []string) {
	indeg := make(map[*planNode]int, len(all))
	for _, n := range all {
		indeg[n] = len(n.deps)
	}
	var queue []*planNode
	for _, n := range all {
		if indeg[n] == 0 {
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		order = append(order, n)
		for _, d := range n.dependents {
			indeg[d]--
			if indeg[d] == 0 {
				queue = append(queue, d)
			}
		}
	}
	if len(order) == len(all) {
		return order, nil
	}
	for _, n := range all {
		if indeg[n] > 0 {
			cycle = append(cycle, n.id)
		}
	}
	return order, cycle
}

func sortProblems(p []Problem, w *workflow.Workflow) {
	pos := map[string]int{}
	for i, n := range w.Nodes {
		pos[n.ID] = i
	}
	sort.SliceStable(p, func(i, j int) bool {
		if p[i].Node != p[j].Node {
			return pos[p[i].Node] < pos[p[j].Node]
		}
		return p[i].Input < p[j].Input
	})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func inputNames(s *pb.NodeSpec) []string {
	out := make([]string, len(s.Inputs))
	for i, in := range s.Inputs {
		out[i] = in.Name
	}
	return out
}
