// Package engine validates and runs workflows: it checks a graph against the node
// specs that plugins describe, derives cache keys, and schedules node executions
// on plugins, streaming events as it goes.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/face0/face0/engine/port"
	pb "github.com/face0/face0/plugins/proto"
)

// NodeDef is a node type as the engine knows it: its spec and where it comes from.
type NodeDef struct {
	Spec *pb.NodeSpec
	// Pack is the plugin that serves it; Build identifies the plugin's code
	// (version plus a hash of its binary), part of every cache key.
	Pack  string
	Build string
}

// Runner executes nodes. The plugin host implements it over gRPC.
type Runner interface {
	// Execute runs one node, passing each streamed event to on, and returns its
	// outputs.
	Execute(ctx context.Context, req *pb.ExecuteRequest, on func(*pb.ExecuteEvent)) (*pb.Outputs, error)
	// Fingerprint asks the node for bytes that change when its result would.
	Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error)
	// Verify asks a node with side effects whether the effect of a cached
	// result (the files it wrote) is still in place.
	Verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error)
}

// Catalog is the set of node types a run can use, with compiled schemas.
type Catalog struct {
	types *port.Registry
	defs  map[string]*nodeInfo
	order []string
}

type nodeInfo struct {
	def     NodeDef
	inputs  map[string]*inputInfo
	outputs map[string]int
}

type inputInfo struct {
	spec     *pb.PortSpec
	schema   *jsonschema.Schema
	def      any // the schema's default, decoded with UseNumber; nil if none
	hasDef   bool
	position int
	hint     string // x-face0-hint: appended to the message when the value is refused
	rules    []inputRule
}

// inputRule is one of an input's x-face0-rules, a constraint between inputs
// that JSON Schema cannot state on one value: when the node's literal
// inputs (an object, defaults filled) match When, this input's value must
// match Then, or the workflow is refused with Message. For example
// Face0Sampler's eta: when scheduler is not ddim, eta must be 0.
//
//	"x-face0-rules": [{"when": {"required": ["scheduler"], "properties": {"scheduler": {"not": {"const": "ddim"}}}},
//	                   "then": {"const": 0}, "message": "only the ddim scheduler takes eta; set eta to 0"}]
type inputRule struct {
	when, then *jsonschema.Schema
	message    string
}

// Vendor keywords of an input's schema that validation reads (the editor
// reads others, such as x-face0-widget).
const (
	HintKeyword  = "x-face0-hint"
	RulesKeyword = "x-face0-rules"
)

// NewCatalog compiles the specs. A spec that is broken (an invalid schema, a
// duplicate port) is returned as an error naming the pack and node; the other
// nodes are still usable, so a bad third-party plugin cannot take down the rest.
func NewCatalog(defs []NodeDef, types []*pb.TypeSpec) (*Catalog, []error) {
	c := &Catalog{types: port.NewRegistry(), defs: map[string]*nodeInfo{}}
	var errs []error
	for _, t := range types {
		if err := c.types.Declare(port.Info{Name: port.Type(t.Name), Description: t.Description, Color: t.Color}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range defs {
		info, err := c.compile(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: node %s: %w", d.Pack, d.Spec.GetType(), err))
			continue
		}
		if prev, dup := c.defs[d.Spec.Type]; dup {
			errs = append(errs, fmt.Errorf("plugin %s: node type %s is already provided by plugin %s; keeping that one", d.Pack, d.Spec.Type, prev.def.Pack))
			continue
		}
		c.defs[d.Spec.Type] = info
		c.order = append(c.order, d.Spec.Type)
	}
	sort.Strings(c.order)
	return c, errs
}

func (c *Catalog) compile(d NodeDef) (*nodeInfo, error) {
	s := d.Spec
	if s == nil || s.Type == "" {
		return nil, fmt.Errorf("spec has no type name")
	}
	info := &nodeInfo{def: d, inputs: map[string]*inputInfo{}, outputs: map[string]int{}}
	for i, in := range s.Inputs {
		if _, dup := info.inputs[in.Name]; dup {
			return nil, fmt.Errorf("input %q declared twice", in.Name)
		}
		if err := port.Type(in.Type).Valid(); err != nil {
			return nil, fmt.Errorf("input %q: %v", in.Name, err)
		}
		ii := &inputInfo{spec: in, position: i}
		if in.Schema != "" {
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(in.Schema))
			if err != nil {
				return nil, fmt.Errorf("input %q: schema is not JSON: %v", in.Name, err)
			}
			comp := jsonschema.NewCompiler()
			url := "node:///" + s.Type + "/" + in.Name
			if err := comp.AddResource(url, doc); err != nil {
				return nil, fmt.Errorf("input %q: %v", in.Name, err)
			}
			sch, err := comp.Compile(url)
			if err != nil {
				return nil, fmt.Errorf("input %q: invalid JSON Schema: %v", in.Name, err)
			}
			ii.schema = sch
			var raw map[string]json.RawMessage
			if json.Unmarshal([]byte(in.Schema), &raw) == nil {
				if dv, ok := raw["default"]; ok {
					dec := json.NewDecoder(bytes.NewReader(dv))
					dec.UseNumber()
					if dec.Decode(&ii.def) == nil {
						ii.hasDef = true
					}
				}
				if h, ok := raw[HintKeyword]; ok {
					_ = json.Unmarshal(h, &ii.hint)
				}
				if r, ok := raw[RulesKeyword]; ok {
					if ii.rules, err = compileRules(url, r); err != nil {
						return nil, fmt.Errorf("input %q: %s: %v", in.Name, RulesKeyword, err)
					}
				}
			}
		}
		info.inputs[in.Name] = ii
	}
	for i, out := range s.Outputs {
		if _, dup := info.outputs[out.Name]; dup {
			return nil, fmt.Errorf("output %q declared twice", out.Name)
		}
		if err := port.Type(out.Type).Valid(); err != nil {
			return nil, fmt.Errorf("output %q: %v", out.Name, err)
		}
		info.outputs[out.Name] = i
	}
	return info, nil
}

func compileRules(base string, raw json.RawMessage) ([]inputRule, error) {
	var list []struct {
		When    json.RawMessage `json:"when"`
		Then    json.RawMessage `json:"then"`
		Message string          `json:"message"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	var out []inputRule
	for i, r := range list {
		if r.Message == "" || len(r.When) == 0 || len(r.Then) == 0 {
			return nil, fmt.Errorf("rule %d needs when, then and message", i)
		}
		var rule inputRule
		for _, part := range []struct {
			name string
			doc  json.RawMessage
			dst  **jsonschema.Schema
		}{{"when", r.When, &rule.when}, {"then", r.Then, &rule.then}} {
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(part.doc))
			if err != nil {
				return nil, fmt.Errorf("rule %d: %s: %v", i, part.name, err)
			}
			comp := jsonschema.NewCompiler()
			u := fmt.Sprintf("%s/rule/%d/%s", base, i, part.name)
			if err := comp.AddResource(u, doc); err != nil {
				return nil, fmt.Errorf("rule %d: %s: %v", i, part.name, err)
			}
			if *part.dst, err = comp.Compile(u); err != nil {
				return nil, fmt.Errorf("rule %d: %s: %v", i, part.name, err)
			}
		}
		rule.message = r.Message
		out = append(out, rule)
	}
	return out, nil
}

// Lookup returns a node type's definition.
func (c *Catalog) Lookup(nodeType string) (NodeDef, bool) {
	i, ok := c.defs[nodeType]
	if !ok {
		return NodeDef{}, false
	}
	return i.def, true
}

// Nodes lists the definitions sorted by type name.
func (c *Catalog) Nodes() []NodeDef {
	out := make([]NodeDef, len(c.order))
	for i, t := range c.order {
		out[i] = c.defs[t].def
	}
	return out
}

// Types lists the port types known to the catalog.
func (c *Catalog) Types() []port.Info { return c.types.All() }

// OutputIndex gives the position of a named output, for the ComfyUI format.
func (c *Catalog) OutputIndex(nodeType, output string) (int, bool) {
	i, ok := c.defs[nodeType]
	if !ok {
		return 0, false
	}
	idx, ok := i.outputs[output]
	return idx, ok
}

// NodeSchema is the JSON Schema of a node's literal inputs as one object, the
// form the editor and /object_info publish.
func NodeSchema(s *pb.NodeSpec) map[string]any {
	props := map[string]any{}
	var required []string
	for _, in := range s.Inputs {
		if !port.Type(in.Type).Literal() {
			continue
		}
		var sch any = map[string]any{}
		if in.Schema != "" {
			_ = json.Unmarshal([]byte(in.Schema), &sch)
		}
		props[in.Name] = sch
		if !in.Optional {
			required = append(required, in.Name)
		}
	}
	out := map[string]any{
		"$schema":    "https://json-schema.org/draft/2020-12/schema",
		"title":      s.Type,
		"type":       "object",
		"properties": props,
	}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

// suggest finds the known name closest to an unknown one, for "did you mean".
func suggest(name string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		d := editDistance(strings.ToLower(name), strings.ToLower(k))
		if d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= max(2, len(name)/3) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
