// Package onnx builds ONNX models in Go: a small graph builder over the ONNX
// protobuf (package onnxpb), enough for Stable Diffusion style networks at any
// width, plus Inspect, which reads a model's inputs and outputs without
// loading its weights.
//
// The builder records the first mistake (a duplicate name, data that does not
// fit its shape, an absent value) and reports it from Model or Save, so that a
// network reads as straight-line code without an error check per op.
package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/x448/float16"

	"github.com/face0/face0/ml/onnx/onnxpb"
)

// Opset is the default ONNX operator set version the builder targets. 17 is
// what the Stable Diffusion exporters of the diffusers era produce and what
// every onnxruntime from 1.13 on runs; it has LayerNormalization but not
// GroupNormalization (18) or Gelu (20), which are composed from smaller ops.
const Opset = 17

// irVersion is the ONNX IR version that goes with opset 17.
const irVersion = 8

// DType is a tensor element type; the values are ONNX's TensorProto.DataType.
type DType int32

// The element types the builder and the runtime support.
const (
	Float DType = 1
	Uint8 DType = 2
	Int8  DType = 3
	Int32 DType = 6
	Int64 DType = 7
	Bool  DType = 9
	// Float16 is IEEE binary16, for half-precision weights and compute
	// (InitializerHalf; ScalarOf makes constants that match it).
	Float16 DType = 10
)

func (d DType) String() string {
	switch d {
	case Float:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case 0:
		return "undefined"
	}
	if n, ok := onnxpb.TensorProto_DataType_name[int32(d)]; ok {
		return strings.ToLower(n)
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Value is a tensor in a graph under construction: a graph input, an
// initializer or a node output. The zero Value stands for an absent optional
// input (ONNX's empty name), as in g.Conv(x, w, onnx.Value{}).
type Value struct {
	Name  string
	DType DType
}

// Valid reports whether v names a tensor.
func (v Value) Valid() bool { return v.Name != "" }

// Attr is one node attribute; build it with AttrInt, AttrInts, AttrFloat,
// AttrString or AttrTensor.
type Attr struct{ p *onnxpb.AttributeProto }

// AttrInt is an integer attribute (axis, group, keepdims...).
func AttrInt(name string, v int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}}
}

// AttrInts is an integer-list attribute (pads, strides, perm...).
func AttrInts(name string, v ...int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: append([]int64(nil), v...)}}
}

// AttrFloat is a float attribute (epsilon, alpha...).
func AttrFloat(name string, v float32) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}}
}

// AttrString is a string attribute (mode...).
func AttrString(name, v string) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}}
}

// AttrTensor is a tensor attribute (Constant's value, ConstantOfShape's value).
func AttrTensor(name string, t *onnxpb.TensorProto) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSOR, T: t}}
}

// Graph is an ONNX graph under construction. It is not safe for concurrent use.
type Graph struct {
	name    string
	opset   int64
	nodes   []*onnxpb.NodeProto
	inits   []*onnxpb.TensorProto
	inputs  []*onnxpb.ValueInfoProto
	outputs []*onnxpb.ValueInfoProto
	meta    []*onnxpb.StringStringEntryProto
	names   map[string]bool // every tensor name in use
	counter map[string]int  // per-op counters for generated names
	scope   []string
	err     error
}

// NewGraph starts an empty graph targeting Opset.
func NewGraph(name string) *Graph {
	return &Graph{name: name, opset: Opset, names: map[string]bool{}, counter: map[string]int{}}
}

// Err is the first mistake recorded while building, or nil.
func (g *Graph) Err() error { return g.err }

func (g *Graph) fail(format string, args ...any) {
	if g.err == nil {
		g.err = fmt.Errorf("onnx: graph %q: "+format, append([]any{g.name}, args...)...)
	}
}

// SetMeta stores a key/value pair in the model's metadata_props, which
// onnxruntime exposes as custom metadata.
func (g *Graph) SetMeta(key, value string) {
	g.meta = append(g.meta, &onnxpb.StringStringEntryProto{Key: key, Value: value})
}

// Push prefixes the names generated from now on (until Pop) with prefix, so a
// block's nodes read as "down1/res/Conv_3" in a viewer and in error messages.
func (g *Graph) Push(prefix string) { g.scope = append(g.scope, prefix) }

// Pop ends the innermost Push.
func (g *Graph) Pop() {
	if len(g.scope) > 0 {
		g.scope = g.scope[:len(g.scope)-1]
	}
}

func (g *Graph) scoped(name string) string {
	if len(g.scope) == 0 {
		return name
	}
	return strings.Join(g.scope, "/") + "/" + name
}

// claim registers a user-chosen tensor name, failing on duplicates.
func (g *Graph) claim(name string) bool {
	if name == "" {
		g.fail("empty tensor name")
		return false
	}
	if g.names[name] {
		g.fail("tensor name %q is used twice", name)
		return false
	}
	g.names[name] = true
	return true
}

// fresh makes an unused name from base.
func (g *Graph) fresh(base string) string {
	base = g.scoped(base)
	for {
		g.counter[base]++
		n := fmt.Sprintf("%s_%d", base, g.counter[base])
		if !g.names[n] {
			g.names[n] = true
			return n
		}
	}
}

// Input declares a graph input. Each dim is an int (a fixed size) or a
// string (a named dynamic axis such as "batch"); onnxruntime accepts any size
// for a named axis and checks fixed ones.
func (g *Graph) Input(name string, dt DType, dims ...any) Value {
	if !g.claim(name) {
		return Value{}
	}
	g.inputs = append(g.inputs, g.valueInfo(name, dt, dims))
	return Value{Name: name, DType: dt}
}

// Output declares v as a graph output called name, with optional dims as in
// Input (none: shape left undeclared). If v already has that name it is used
// as is; otherwise an Identity node gives it the name, which onnxruntime
// removes when it optimises the graph.
func (g *Graph) Output(name string, v Value, dims ...any) {
	if !g.check("Output", v) {
		return
	}
	if v.Name != name {
		if !g.claim(name) {
			return
		}
		g.nodes = append(g.nodes, &onnxpb.NodeProto{OpType: "Identity", Name: g.fresh("Identity"), Input: []string{v.Name}, Output: []string{name}})
	}
	for _, o := range g.outputs {
		if o.Name == name {
			g.fail("output %q declared twice", name)
			return
		}
	}
	var vi *onnxpb.ValueInfoProto
	switch {
	case len(dims) == 1 && dims[0] == scalarMarker{}:
		vi = g.valueInfo(name, v.DType, nil)
	case len(dims) == 0:
		vi = g.valueInfo(name, v.DType, nil)
		vi.Type.GetTensorType().Shape = nil
	default:
		vi = g.valueInfo(name, v.DType, dims)
	}
	g.outputs = append(g.outputs, vi)
}

// OutputScalar declares a rank-0 output. A scalar result must be declared
// so: onnxruntime_go cannot wrap a rank-0 tensor that onnxruntime allocated,
// so ort.Session preallocates declared scalars.
func (g *Graph) OutputScalar(name string, v Value) {
	g.Output(name, v, scalarMarker{})
}

type scalarMarker struct{}

func (g *Graph) valueInfo(name string, dt DType, dims []any) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		var dim onnxpb.TensorShapeProto_Dimension
		switch d := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}
		case int64:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		case string:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}
		default:
			g.fail("%s: dim %d is a %T; use an int or a string", name, i, d)
		}
		shape.Dim = append(shape.Dim, &dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt), Shape: shape}}},
	}
}

// Initializer adds a float32 weight with the given shape. The data is stored
// as raw little-endian bytes, as exporters do.
func (g *Graph) Initializer(name string, data []float32, shape ...int) Value {
	if !g.claim(name) {
		return Value{}
	}
	return g.addFloat(name, data, shape)
}

// addFloat adds an initializer whose name is already claimed.
func (g *Graph) addFloat(name string, data []float32, shape []int) Value {
	if !g.checkLen(name, len(data), shape) {
		return Value{}
	}
	raw := make([]byte, 4*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	g.inits = append(g.inits, &onnxpb.TensorProto{Name: name, DataType: int32(Float), Dims: dims64(shape), RawData: raw})
	return Value{Name: name, DType: Float}
}

// InitializerHalf adds a weight stored as float16 (each value rounded to
// the nearest binary16), for half-precision graphs: half the bytes of
// Initializer, and the type fp16 kernels read.
func (g *Graph) InitializerHalf(name string, data []float32, shape ...int) Value {
	if !g.claim(name) {
		return Value{}
	}
	return g.addHalf(name, data, shape)
}

// addHalf adds a float16 initializer whose name is already claimed.
func (g *Graph) addHalf(name string, data []float32, shape []int) Value {
	if !g.checkLen(name, len(data), shape) {
		return Value{}
	}
	raw := make([]byte, 2*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint16(raw[2*i:], float16.Fromfloat32(f).Bits())
	}
	g.inits = append(g.inits, &onnxpb.TensorProto{Name: name, DataType: int32(Float16), Dims: dims64(shape), RawData: raw})
	return Value{Name: name, DType: Float16}
}

// InitializerInt64 adds an int64 constant tensor.
func (g *Graph) InitializerInt64(name string, data []int64, shape ...int) Value {
	if !g.claim(name) {
		return Value{}
	}
	return g.addInt64(name, data, shape)
}

func (g *Graph) addInt64(name string, data []int64, shape []int) Value {
	if !g.checkLen(name, len(data), shape) {
		return Value{}
	}
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	g.inits = append(g.inits, &onnxpb.TensorProto{Name: name, DataType: int32(Int64), Dims: dims64(shape), RawData: raw})
	return Value{Name: name, DType: Int64}
}

// Const adds an unnamed float32 constant (a generated name is used).
func (g *Graph) Const(data []float32, shape ...int) Value {
	return g.addFloat(g.fresh("const"), data, shape)
}

// Scalar adds a rank-0 float32 constant, for broadcasting arithmetic.
func (g *Graph) Scalar(v float32) Value { return g.Const([]float32{v}) }

// ScalarOf adds a rank-0 constant of element type dt (Float16, else
// float32): ONNX does not promote types, so a constant that meets a
// float16 tensor must be float16 itself.
func (g *Graph) ScalarOf(dt DType, v float32) Value {
	if dt == Float16 {
		return g.addHalf(g.fresh("const"), []float32{v}, nil)
	}
	return g.Scalar(v)
}

// Ints adds a 1-D int64 constant: the shape, axes, starts... inputs that
// opset 13+ ops take as tensors rather than attributes.
func (g *Graph) Ints(v ...int64) Value {
	return g.addInt64(g.fresh("ints"), v, []int{len(v)})
}

func (g *Graph) checkLen(name string, n int, shape []int) bool {
	want := 1
	for _, d := range shape {
		if d < 0 {
			g.fail("initializer %q: negative dim in shape %v", name, shape)
			return false
		}
		want *= d
	}
	if n != want {
		g.fail("initializer %q: %d values do not fill shape %v (%d)", name, n, shape, want)
		return false
	}
	return true
}

func dims64(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}

func (g *Graph) check(op string, vs ...Value) bool {
	for i, v := range vs {
		if !v.Valid() {
			g.fail("%s: input %d is absent (an earlier step failed, or a Value{} was passed where a tensor is required)", g.scoped(op), i)
			return false
		}
	}
	return true
}

// Node adds one node of any ONNX op with a single output and returns it. An
// absent Value in inputs becomes an omitted optional input. The output's
// element type is taken from the first input; use NodeTyped where the op
// decides it (Cast, Shape, comparisons).
func (g *Graph) Node(op string, inputs []Value, attrs ...Attr) Value {
	dt := DType(0)
	for _, in := range inputs {
		if in.Valid() {
			dt = in.DType
			break
		}
	}
	return g.NodeTyped(op, dt, inputs, attrs...)
}

// NodeTyped is Node with an explicit output element type.
func (g *Graph) NodeTyped(op string, out DType, inputs []Value, attrs ...Attr) Value {
	outs := g.NodeN(op, 1, inputs, attrs...)
	if outs == nil {
		return Value{}
	}
	outs[0].DType = out
	return outs[0]
}

// NodeN adds a node with n outputs (all typed like the first input).
func (g *Graph) NodeN(op string, n int, inputs []Value, attrs ...Attr) []Value {
	if g.err != nil {
		return nil
	}
	names := make([]string, len(inputs))
	var dt DType
	for i, in := range inputs {
		names[i] = in.Name
		if dt == 0 {
			dt = in.DType
		}
	}
	// Omitted optional inputs are legal only before the last given one;
	// trailing ones are simply dropped.
	for len(names) > 0 && names[len(names)-1] == "" {
		names = names[:len(names)-1]
	}
	if len(names) > 0 && names[0] == "" {
		g.fail("%s: first input is absent", g.scoped(op))
		return nil
	}
	node := &onnxpb.NodeProto{OpType: op, Name: g.fresh(op), Input: names}
	for _, a := range attrs {
		node.Attribute = append(node.Attribute, a.p)
	}
	outs := make([]Value, n)
	for i := range outs {
		outs[i] = Value{Name: node.Name + outSuffix(i, n), DType: dt}
		if n > 1 {
			g.names[outs[i].Name] = true
		}
		node.Output = append(node.Output, outs[i].Name)
	}
	g.nodes = append(g.nodes, node)
	return outs
}

// outSuffix names a node's outputs after the node itself: the node name is
// already unique, so the single output can share it.
func outSuffix(i, n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf(":%d", i)
}

// Model assembles the ModelProto, or returns the first building mistake.
func (g *Graph) Model() (*onnxpb.ModelProto, error) {
	if g.err != nil {
		return nil, g.err
	}
	if len(g.outputs) == 0 {
		return nil, errors.New("onnx: graph " + fmt.Sprintf("%q", g.name) + " has no outputs")
	}
	return &onnxpb.ModelProto{
		IrVersion:     irVersion,
		OpsetImport:   []*onnxpb.OperatorSetIdProto{{Domain: "", Version: g.opset}},
		ProducerName:  "face0",
		MetadataProps: g.meta,
		Graph: &onnxpb.GraphProto{
			Name:        g.name,
			Node:        g.nodes,
			Initializer: g.inits,
			Input:       g.inputs,
			Output:      g.outputs,
		},
	}, nil
}

// ParamCount is the number of weight elements in the graph's initializers.
func (g *Graph) ParamCount() int64 {
	var n int64
	for _, t := range g.inits {
		c := int64(1)
		for _, d := range t.Dims {
			c *= d
		}
		n += c
	}
	return n
}
