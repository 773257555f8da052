package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/port"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Caps is what a group of workers can run: the node types of their packs,
// with the specs their plugins describe on that machine. A spec's choices
// come from the machine's files, so the models a worker has are the choices
// of its nodes' model inputs, and a node that names a model the worker lacks
// is one its spec refuses. Workers with equal Caps form one group and pull
// from one consumer.
type Caps struct {
	Group  string            `json:"group"`
	Packs  []Pack            `json:"packs"`
	Models []string          `json:"models,omitempty"`
	GPU    bool              `json:"gpu,omitempty"`
	Nodes  []Node            `json:"nodes"`
	Types  []json.RawMessage `json:"types,omitempty"` // protojson TypeSpecs
}

// Pack is a plugin pack and its version.
type Pack struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Node is one node type a group offers.
type Node struct {
	Spec  json.RawMessage `json:"spec"` // protojson NodeSpec
	Pack  string          `json:"pack"`
	Build string          `json:"build"` // pack version + "+" + binary hash
}

// NewCaps describes what a machine can run and names its group.
func NewCaps(defs []engine.NodeDef, types []*pb.TypeSpec, models []string, gpu bool) (*Caps, error) {
	c := &Caps{Models: append([]string(nil), models...), GPU: gpu}
	sort.Strings(c.Models)
	packs := map[string]string{}
	h := sha256.New()
	det := proto.MarshalOptions{Deterministic: true}
	sorted := append([]engine.NodeDef(nil), defs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Spec.GetType() < sorted[j].Spec.GetType() })
	for _, d := range sorted {
		spec, err := protojson.Marshal(d.Spec)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, Node{Spec: spec, Pack: d.Pack, Build: d.Build})
		packs[d.Pack] = PackVersion(d.Build)
		b, _ := det.Marshal(d.Spec)
		fmt.Fprintf(h, "node %d:%s %s %s\n", len(b), b, d.Pack, d.Build)
	}
	ts := append([]*pb.TypeSpec(nil), types...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	for _, t := range ts {
		b, err := protojson.Marshal(t)
		if err != nil {
			return nil, err
		}
		c.Types = append(c.Types, b)
		fmt.Fprintf(h, "type %s\n", b)
	}
	for name, v := range packs {
		c.Packs = append(c.Packs, Pack{name, v})
	}
	sort.Slice(c.Packs, func(i, j int) bool { return c.Packs[i].Name < c.Packs[j].Name })
	fmt.Fprintf(h, "models %q gpu %v\n", c.Models, c.GPU)
	c.Group = hex.EncodeToString(h.Sum(nil))[:16]
	return c, nil
}

// PackVersion is the version part of a NodeDef's Build ("1.2.0+hash"):
// machines built separately share versions, not binaries.
func PackVersion(build string) string {
	v, _, _ := strings.Cut(build, "+")
	return v
}

// Defs decodes the node definitions and port types.
func (c *Caps) Defs() ([]engine.NodeDef, []*pb.TypeSpec, error) {
	var defs []engine.NodeDef
	for _, n := range c.Nodes {
		spec := &pb.NodeSpec{}
		if err := protojson.Unmarshal(n.Spec, spec); err != nil {
			return nil, nil, fmt.Errorf("group %s: a node spec: %w", c.Group, err)
		}
		defs = append(defs, engine.NodeDef{Spec: spec, Pack: n.Pack, Build: n.Build})
	}
	var types []*pb.TypeSpec
	for _, raw := range c.Types {
		t := &pb.TypeSpec{}
		if err := protojson.Unmarshal(raw, t); err != nil {
			return nil, nil, fmt.Errorf("group %s: a port type: %w", c.Group, err)
		}
		types = append(types, t)
	}
	return defs, types, nil
}

// Beat is a worker's heartbeat: who it is, which group it pulls for, how
// busy it is.
type Beat struct {
	Worker  string    `json:"worker"` // unique: name plus a random suffix
	Name    string    `json:"name"`
	Host    string    `json:"host"`
	Group   string    `json:"group"`
	Slots   int       `json:"slots"`
	Busy    int       `json:"busy"`
	GPU     string    `json:"gpu,omitempty"` // the GPU's name; "" for none
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// Matcher answers, for one group, whether it can run a node.
type Matcher struct {
	caps  *Caps
	nodes map[string]*matchNode
}

type matchNode struct {
	def    engine.NodeDef
	inputs map[string]*matchInput
}

type matchInput struct {
	spec   *pb.PortSpec
	schema *jsonschema.Schema
}

// NewMatcher compiles the caps' input schemas.
func NewMatcher(c *Caps) (*Matcher, error) {
	defs, _, err := c.Defs()
	if err != nil {
		return nil, err
	}
	m := &Matcher{caps: c, nodes: map[string]*matchNode{}}
	for _, d := range defs {
		mn := &matchNode{def: d, inputs: map[string]*matchInput{}}
		for _, in := range d.Spec.Inputs {
			mi := &matchInput{spec: in}
			if in.Schema != "" && port.Type(in.Type).Literal() {
				doc, err := jsonschema.UnmarshalJSON(strings.NewReader(in.Schema))
				if err != nil {
					continue // validation at the server refuses it anyway
				}
				comp := jsonschema.NewCompiler()
				url := "worker:///" + d.Spec.Type + "/" + in.Name
				if comp.AddResource(url, doc) == nil {
					mi.schema, _ = comp.Compile(url)
				}
			}
			mn.inputs[in.Name] = mi
		}
		m.nodes[d.Spec.Type] = mn
	}
	return m, nil
}

// Caps returns what the matcher was made from.
func (m *Matcher) Caps() *Caps { return m.caps }

// Def returns the group's definition of a node type.
func (m *Matcher) Def(nodeType string) (engine.NodeDef, bool) {
	n, ok := m.nodes[nodeType]
	if !ok {
		return engine.NodeDef{}, false
	}
	return n.def, true
}

// Can says why the group cannot run a node of nodeType with these inputs,
// or nil when it can: it must offer the node type, at the versions of want
// (the definition the server validated against) when given, accept every
// literal input (a model it lacks is not among its choices), and have a GPU
// when the node asks for cuda.
func (m *Matcher) Can(nodeType string, inputs map[string]*pb.Value, want *engine.NodeDef) error {
	n, ok := m.nodes[nodeType]
	if !ok {
		return fmt.Errorf("has no node %s", nodeType)
	}
	if want != nil {
		if n.def.Spec.Version != want.Spec.Version || PackVersion(n.def.Build) != PackVersion(want.Build) || n.def.Pack != want.Pack {
			return fmt.Errorf("has node %s of pack %s %s (node version %q), not %s %s (%q)", nodeType,
				n.def.Pack, PackVersion(n.def.Build), n.def.Spec.Version, want.Pack, PackVersion(want.Build), want.Spec.Version)
		}
	}
	for name, v := range inputs {
		in, ok := n.inputs[name]
		if !ok {
			return fmt.Errorf("node %s has no input %s", nodeType, name)
		}
		if s, ok := v.GetKind().(*pb.Value_String_); ok && name == "device" && s.String_ == "cuda" && !m.caps.GPU {
			return fmt.Errorf("has no GPU for %s's device cuda", nodeType)
		}
		if in.schema == nil {
			continue
		}
		switch v.GetKind().(type) {
		case *pb.Value_Int, *pb.Value_Float, *pb.Value_String_, *pb.Value_Bool:
		default:
			continue
		}
		raw, err := json.Marshal(value.ToJSON(v))
		if err != nil {
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		if err := in.schema.Validate(doc); err != nil {
			return fmt.Errorf("does not accept %s's %s = %s", nodeType, name, raw)
		}
	}
	return nil
}
