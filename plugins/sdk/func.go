package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Option configures a node made with Func.
type Option func(*funcNode)

// Category places the node in the editor's palette ("image/filters").
func Category(c string) Option { return func(n *funcNode) { n.spec.Category = c } }

// Describe sets the node's help text.
func Describe(text string) Option { return func(n *funcNode) { n.spec.Description = text } }

// DisplayName sets the title shown in the editor.
func DisplayName(s string) Option { return func(n *funcNode) { n.spec.DisplayName = s } }

// Version sets the node's behaviour version. Bump it when the same inputs start
// giving different outputs: it is part of every cache key.
func Version(v string) Option { return func(n *funcNode) { n.spec.Version = v } }

// NonDeterministic marks a node whose output varies between runs with the same
// inputs; its results are never cached.
func NonDeterministic() Option { return func(n *funcNode) { n.spec.Deterministic = false } }

// OutputNode marks a sink whose run is wanted for its own sake (SaveImage).
func OutputNode() Option { return func(n *funcNode) { n.spec.OutputNode = true } }

// WithFingerprint makes the host call fp before looking up the cache, so that
// the node re-runs when what fp reads (a file's content) changes.
func WithFingerprint(fp func(ctx context.Context, dirs *pb.Dirs, inputs map[string]*pb.Value) ([]byte, error)) Option {
	return func(n *funcNode) { n.fingerprint = fp; n.spec.Fingerprint = true }
}

// VerifyFunc checks that the effect of a node's cached run is still in
// place: it returns nil when it is, and otherwise an error saying what is
// missing or changed. outputs is the cached result (its ui in full, its
// values without tensors); inputs are the literal inputs; dirs are this run's
// folders.
type VerifyFunc func(ctx context.Context, dirs *pb.Dirs, inputs map[string]*pb.Value, outputs *pb.Outputs) error

// SideEffects declares that the node's job is an effect outside its outputs,
// such as files it writes (a SaveImage, a model exporter). The host then
// never reuses a cached result blindly: the folders are part of the node's
// cache key, and a cached result counts only when verify says its effect is
// still in place (VerifyFiles checks the files a node lists in its ui with
// Context.SaveFile); otherwise the node runs again, with its inputs from the
// cache. With verify nil the node runs every time a run wants it. Either
// way, make the node leave things alone that are already right (SaveFile
// reuses an identical file instead of writing a duplicate).
func SideEffects(verify VerifyFunc) Option {
	return func(n *funcNode) {
		n.spec.SideEffects, n.spec.Verify, n.verify = true, verify != nil, verify
	}
}

// Choices makes a string input an enum whose values are computed each time the
// host asks for specs (models found on disk, say).
func Choices(input string, values func() []string) Option {
	return func(n *funcNode) { n.choices[input] = values }
}

// TypeParam sets the parameter of a port's type from a literal input: for
// example the embedding space of a FACE_EMBEDDING input follows the chosen model.
func TypeParam(portName, fromInput string, table func() map[string]string) Option {
	return func(n *funcNode) { n.params[portName] = paramRule{fromInput, table} }
}

type paramRule struct {
	from  string
	table func() map[string]string
}

// Func makes a node from a function. I and O must be structs; each exported
// field is a port, configured by its `face0` tag:
//
//	name            the port name (default: the field name, lower-cased first letter)
//	type=T          the port type, for Tensor and Raw fields (LATENT, MY_TYPE)
//	optional        an input that may be left unset (its zero value, or nil pointer)
//	default=V       a literal's default (implies optional)
//	min=, max=, step=  number bounds and editor step
//	enum=a|b|c      a string input with fixed choices
//	maxlen=N        the longest string accepted (default 1 MiB)
//	multiline       a text area in the editor
//	widget=slider   an editor hint
//	randomize       a seed the editor may randomise after each run
//	link            an input that must be linked, never written inline
//	ui              an output shown to the user (saved image names), not a port
//
// and `doc:"..."` gives a port's description.
func Func[I, O any](name string, fn func(*Context, I) (O, error), opts ...Option) Node {
	n := &funcNode{
		spec:    &pb.NodeSpec{Type: name, Version: "1", Deterministic: true},
		choices: map[string]func() []string{},
		params:  map[string]paramRule{},
		inType:  reflect.TypeFor[I](),
		outType: reflect.TypeFor[O](),
	}
	n.call = func(ctx *Context, in reflect.Value) (reflect.Value, error) {
		out, err := fn(ctx, in.Interface().(I))
		return reflect.ValueOf(out), err
	}
	for _, o := range opts {
		o(n)
	}
	var err error
	if n.inPorts, err = fieldPorts(n.inType, true); err != nil {
		panic(fmt.Sprintf("sdk.Func(%q): input struct: %v", name, err))
	}
	if n.outPorts, err = fieldPorts(n.outType, false); err != nil {
		panic(fmt.Sprintf("sdk.Func(%q): output struct: %v", name, err))
	}
	return n
}

type funcNode struct {
	spec              *pb.NodeSpec
	fingerprint       func(context.Context, *pb.Dirs, map[string]*pb.Value) ([]byte, error)
	verify            VerifyFunc
	choices           map[string]func() []string
	params            map[string]paramRule
	inType, outType   reflect.Type
	inPorts, outPorts []fieldPort
	call              func(*Context, reflect.Value) (reflect.Value, error)
}

var _ Node = (*funcNode)(nil)
var _ Fingerprinter = (*funcNode)(nil)
var _ Verifier = (*funcNode)(nil)

type fieldPort struct {
	index    int
	name     string
	typ      string
	kind     fieldKind
	ptr      bool
	optional bool
	linkOnly bool
	ui       bool // output shown to the user, not linkable (Outputs.Ui)
	schema   map[string]any
	doc      string
}

type fieldKind int

const (
	kInt fieldKind = iota
	kFloat
	kString
	kBool
	kImage
	kTensor
	kEmbedding
	kRaw
)

var (
	imageType     = reflect.TypeFor[Image]()
	tensorType    = reflect.TypeFor[Tensor]()
	embeddingType = reflect.TypeFor[Embedding]()
	rawType       = reflect.TypeFor[*pb.Value]()
)

// DefaultMaxString bounds string literals unless a tag says otherwise, so that a
// 10 MB prompt is refused by validation instead of reaching a node.
const DefaultMaxString = 1 << 20

func fieldPorts(t reflect.Type, input bool) ([]fieldPort, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s is not a struct", t)
	}
	var ports []fieldPort
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		p := fieldPort{index: i, name: lowerFirst(f.Name), schema: map[string]any{}, doc: f.Tag.Get("doc")}
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft != rawType {
			p.ptr, ft = true, ft.Elem()
			p.optional = true
		}
		switch {
		case ft == rawType:
			p.kind = kRaw
		case ft == imageType:
			p.kind, p.typ = kImage, "IMAGE"
		case ft == tensorType:
			p.kind = kTensor
		case ft == embeddingType:
			p.kind, p.typ = kEmbedding, "FACE_EMBEDDING"
		case ft.Kind() == reflect.Bool:
			p.kind, p.typ = kBool, "BOOLEAN"
			p.schema["type"] = "boolean"
		case ft.Kind() == reflect.String:
			p.kind, p.typ = kString, "STRING"
			p.schema["type"] = "string"
			p.schema["maxLength"] = DefaultMaxString
		case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Int64:
			p.kind, p.typ = kInt, "INT"
			p.schema["type"] = "integer"
		case ft.Kind() == reflect.Float32 || ft.Kind() == reflect.Float64:
			p.kind, p.typ = kFloat, "FLOAT"
			p.schema["type"] = "number"
		default:
			return nil, fmt.Errorf("field %s: type %s is not a port type (use int, float64, string, bool, sdk.Image, sdk.Tensor, sdk.Embedding or sdk.Raw)", f.Name, f.Type)
		}
		if err := applyTag(&p, f.Tag.Get("face0"), ft); err != nil {
			return nil, fmt.Errorf("field %s: %v", f.Name, err)
		}
		if p.typ == "" {
			return nil, fmt.Errorf("field %s: a %s field needs type=NAME in its tag", f.Name, ft)
		}
		if seen[p.name] {
			return nil, fmt.Errorf("port name %q is used twice", p.name)
		}
		seen[p.name] = true
		if !input {
			p.schema = nil
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func applyTag(p *fieldPort, tag string, ft reflect.Type) error {
	if tag == "" {
		return nil
	}
	parts := strings.Split(tag, ",")
	if parts[0] != "" {
		p.name = parts[0]
	}
	num := func(s string) (any, error) {
		if p.kind == kInt {
			return strconv.ParseInt(s, 10, 64)
		}
		return strconv.ParseFloat(s, 64)
	}
	for _, opt := range parts[1:] {
		key, val, _ := strings.Cut(opt, "=")
		switch key {
		case "type":
			p.typ = val
		case "optional":
			p.optional = true
		case "link":
			p.linkOnly = true
		case "ui":
			p.ui = true
		case "multiline":
			p.schema["x-face0-multiline"] = true
		case "randomize":
			p.schema["x-face0-randomize"] = true
		case "widget":
			p.schema["x-face0-widget"] = val
		case "maxlen":
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("maxlen=%q is not an integer", val)
			}
			p.schema["maxLength"] = n
		case "enum":
			vals := strings.Split(val, "|")
			p.typ = "ENUM"
			p.schema["enum"] = vals
		case "min", "max", "step":
			v, err := num(val)
			if err != nil {
				return fmt.Errorf("%s=%q is not a number", key, val)
			}
			switch key {
			case "min":
				p.schema["minimum"] = v
			case "max":
				p.schema["maximum"] = v
			case "step":
				p.schema["x-face0-step"] = v
			}
		case "default":
			var v any = val
			switch p.kind {
			case kInt, kFloat:
				n, err := num(val)
				if err != nil {
					return fmt.Errorf("default=%q is not a number", val)
				}
				v = n
			case kBool:
				b, err := strconv.ParseBool(val)
				if err != nil {
					return fmt.Errorf("default=%q is not true or false", val)
				}
				v = b
			}
			p.schema["default"] = v
			p.optional = true
		default:
			return fmt.Errorf("unknown tag option %q", key)
		}
	}
	_ = ft
	return nil
}

func lowerFirst(s string) string {
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}

func (n *funcNode) Spec() *pb.NodeSpec {
	spec := &pb.NodeSpec{
		Type: n.spec.Type, DisplayName: n.spec.DisplayName, Category: n.spec.Category,
		Description: n.spec.Description, Version: n.spec.Version, Deterministic: n.spec.Deterministic,
		OutputNode: n.spec.OutputNode, Fingerprint: n.spec.Fingerprint,
		SideEffects: n.spec.SideEffects, Verify: n.spec.Verify,
	}
	for _, p := range n.inPorts {
		schema := p.schema
		typ := p.typ
		if choices, ok := n.choices[p.name]; ok {
			schema = cloneMap(schema)
			vals := choices()
			if vals == nil {
				// An empty list, not null: "no choices yet" (no model on disk)
				// must still be a valid schema, or the node would vanish.
				vals = []string{}
			}
			schema["enum"] = vals
			if _, ok := schema["default"]; !ok && len(vals) > 0 {
				schema["default"] = vals[0]
			}
			typ = "ENUM"
		}
		ps := &pb.PortSpec{Name: p.name, Type: typ, Optional: p.optional, Description: p.doc, LinkOnly: p.linkOnly}
		if len(schema) > 0 {
			b, _ := json.Marshal(schema)
			ps.Schema = string(b)
		}
		ps.Param = n.paramSpec(p.name)
		spec.Inputs = append(spec.Inputs, ps)
	}
	for _, p := range n.outPorts {
		if p.ui {
			continue
		}
		spec.Outputs = append(spec.Outputs, &pb.PortSpec{Name: p.name, Type: p.typ, Description: p.doc, Param: n.paramSpec(p.name)})
	}
	return spec
}

func (n *funcNode) paramSpec(port string) *pb.TypeParam {
	r, ok := n.params[port]
	if !ok {
		return nil
	}
	return &pb.TypeParam{FromInput: r.from, Map: r.table()}
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m)+2)
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (n *funcNode) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	if n.fingerprint == nil {
		return nil, nil
	}
	return n.fingerprint(ctx, req.Dirs, req.Inputs)
}

func (n *funcNode) Verify(ctx context.Context, req *pb.VerifyRequest) error {
	if n.verify == nil {
		return errors.New("the node cannot check its effect")
	}
	return n.verify(ctx, req.Dirs, req.Inputs, req.Outputs)
}

func (n *funcNode) Execute(ctx *Context, inputs map[string]*pb.Value) (*pb.Outputs, error) {
	in := reflect.New(n.inType).Elem()
	for _, p := range n.inPorts {
		v, ok := inputs[p.name]
		if !ok || value.IsNull(v) {
			if d, ok := p.schema["default"]; ok {
				dv, err := value.FromJSON(d)
				if err != nil {
					return nil, err
				}
				v = dv
			} else if p.optional {
				continue
			} else {
				return nil, fmt.Errorf("input %q is required", p.name)
			}
		}
		if err := setField(in.Field(p.index), p, v); err != nil {
			return nil, fmt.Errorf("input %q: %w", p.name, err)
		}
	}
	out, err := n.call(ctx, in)
	if err != nil {
		return nil, err
	}
	res := &pb.Outputs{Values: map[string]*pb.Value{}}
	for _, p := range n.outPorts {
		v, err := getField(out.Field(p.index), p)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", p.name, err)
		}
		switch {
		case v == nil:
		case p.ui:
			if res.Ui == nil {
				res.Ui = map[string]*pb.Value{}
			}
			res.Ui[p.name] = v
		default:
			res.Values[p.name] = v
		}
	}
	return res, nil
}

func setField(f reflect.Value, p fieldPort, v *pb.Value) error {
	if p.ptr {
		ptr := reflect.New(f.Type().Elem())
		f.Set(ptr)
		f = ptr.Elem()
	}
	switch p.kind {
	case kRaw:
		f.Set(reflect.ValueOf(v))
	case kInt:
		i, err := value.AsInt(v)
		if err != nil {
			return err
		}
		if f.OverflowInt(i) {
			return fmt.Errorf("%d does not fit", i)
		}
		f.SetInt(i)
	case kFloat:
		x, err := value.AsFloat(v)
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case kString:
		s, err := value.AsString(v)
		if err != nil {
			return err
		}
		f.SetString(s)
	case kBool:
		b, err := value.AsBool(v)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case kImage:
		imgs, err := value.AsImages(v)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(Image{Batch: imgs}))
	case kTensor:
		// A view, not a copy: a large input maps the host's file (see Tensor).
		data, shape, err := value.AsFloat32View(v)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(Tensor{Data: data, Shape: shape}))
	case kEmbedding:
		data, _, err := value.AsFloat32(v)
		if err != nil {
			return err
		}
		space := ""
		if t := v.GetType(); strings.Contains(t, ":") {
			space = t[strings.IndexByte(t, ':')+1:]
		}
		f.Set(reflect.ValueOf(Embedding{Space: space, Vector: data}))
	}
	return nil
}

func getField(f reflect.Value, p fieldPort) (*pb.Value, error) {
	if p.ptr {
		if f.IsNil() {
			return nil, nil
		}
		f = f.Elem()
	}
	switch p.kind {
	case kRaw:
		v, _ := f.Interface().(*pb.Value)
		return v, nil
	case kInt:
		return value.Int(f.Int()), nil
	case kFloat:
		return value.Float(f.Float()), nil
	case kString:
		return value.String(f.String()), nil
	case kBool:
		return value.Bool(f.Bool()), nil
	case kImage:
		img := f.Interface().(Image)
		if len(img.Batch) == 0 {
			return nil, fmt.Errorf("empty image")
		}
		ims := make([]image.Image, len(img.Batch))
		for i, b := range img.Batch {
			ims[i] = b
		}
		return value.Images(ims...)
	case kTensor:
		t := f.Interface().(Tensor)
		// A view: the server writes it out (or names its file) before the
		// node could change it again.
		return value.Float32View(p.typ, t.Data, t.Shape...), nil
	case kEmbedding:
		e := f.Interface().(Embedding)
		typ := "FACE_EMBEDDING"
		if e.Space != "" {
			typ += ":" + e.Space
		}
		return value.Float32Tensor(typ, e.Vector, int64(len(e.Vector))), nil
	}
	return nil, fmt.Errorf("unsupported port kind")
}
