package onnx

import "math"

// The methods below are thin, typed wrappers over Node for the ops Stable
// Diffusion style networks use, with opset 17 semantics. Where opset 17 takes
// shapes, axes or bounds as tensor inputs (Reshape, Unsqueeze, Slice...), the
// wrappers take Go ints and add the constant; the *V variants take a Value
// for shapes computed in the graph (dynamic batch, height, width).

// Add is elementwise a+b with broadcasting; likewise Sub, Mul, Div, Pow.
func (g *Graph) Add(a, b Value) Value { return g.Node("Add", []Value{a, b}) }

// Sub is a-b.
func (g *Graph) Sub(a, b Value) Value { return g.Node("Sub", []Value{a, b}) }

// Mul is a*b.
func (g *Graph) Mul(a, b Value) Value { return g.Node("Mul", []Value{a, b}) }

// Div is a/b.
func (g *Graph) Div(a, b Value) Value { return g.Node("Div", []Value{a, b}) }

// Pow is a**b.
func (g *Graph) Pow(a, b Value) Value { return g.Node("Pow", []Value{a, b}) }

// MatMul is numpy-style batched matrix multiplication.
func (g *Graph) MatMul(a, b Value) Value { return g.Node("MatMul", []Value{a, b}) }

// Gemm is alpha*A'*B' + C for 2-D A and B; transB=true takes B as [N,K], the
// layout of torch's Linear weight.
func (g *Graph) Gemm(a, b, c Value, transB bool) Value {
	t := int64(0)
	if transB {
		t = 1
	}
	return g.Node("Gemm", []Value{a, b, c}, AttrInt("transB", t))
}

// Linear is x·w + b for x of any rank ≥ 2 and w of shape [in, out]; b may be
// absent. MatMul+Add rather than Gemm because Gemm is 2-D only.
func (g *Graph) Linear(x, w, b Value) Value {
	y := g.MatMul(x, w)
	if b.Valid() {
		y = g.Add(y, b)
	}
	return y
}

// Unary ops.

// Sigmoid is 1/(1+e^-x).
func (g *Graph) Sigmoid(x Value) Value { return g.Node("Sigmoid", []Value{x}) }

// Relu is max(x, 0).
func (g *Graph) Relu(x Value) Value { return g.Node("Relu", []Value{x}) }

// Tanh is tanh(x).
func (g *Graph) Tanh(x Value) Value { return g.Node("Tanh", []Value{x}) }

// Erf is the error function.
func (g *Graph) Erf(x Value) Value { return g.Node("Erf", []Value{x}) }

// Sin is sin(x).
func (g *Graph) Sin(x Value) Value { return g.Node("Sin", []Value{x}) }

// Cos is cos(x).
func (g *Graph) Cos(x Value) Value { return g.Node("Cos", []Value{x}) }

// Exp is e^x.
func (g *Graph) Exp(x Value) Value { return g.Node("Exp", []Value{x}) }

// Sqrt is √x.
func (g *Graph) Sqrt(x Value) Value { return g.Node("Sqrt", []Value{x}) }

// Neg is -x.
func (g *Graph) Neg(x Value) Value { return g.Node("Neg", []Value{x}) }

// SiLU is x·sigmoid(x) (swish), the UNet's activation.
func (g *Graph) SiLU(x Value) Value { return g.Mul(x, g.Sigmoid(x)) }

// Gelu is the exact GELU, 0.5·x·(1+erf(x/√2)); opset 17 has no Gelu op.
func (g *Graph) Gelu(x Value) Value {
	e := g.Erf(g.Mul(x, g.ScalarOf(x.DType, float32(1/math.Sqrt2))))
	return g.Mul(g.Mul(x, g.ScalarOf(x.DType, 0.5)), g.Add(e, g.ScalarOf(x.DType, 1)))
}

// QuickGelu is x·sigmoid(1.702x), the activation of CLIP's text encoder.
func (g *Graph) QuickGelu(x Value) Value {
	return g.Mul(x, g.Sigmoid(g.Mul(x, g.ScalarOf(x.DType, 1.702))))
}

// Softmax normalises along axis (negative counts from the end).
func (g *Graph) Softmax(x Value, axis int) Value {
	return g.Node("Softmax", []Value{x}, AttrInt("axis", int64(axis)))
}

// Cast converts x to dt.
func (g *Graph) Cast(x Value, dt DType) Value {
	return g.NodeTyped("Cast", dt, []Value{x}, AttrInt("to", int64(dt)))
}

// Shape is x's shape as a 1-D int64 tensor.
func (g *Graph) Shape(x Value) Value { return g.NodeTyped("Shape", Int64, []Value{x}) }

// Reshape takes shape with ONNX's rules: 0 copies the input's dim, -1 is
// inferred. Copying dims with 0 keeps a dynamic batch dynamic without
// computing shapes in the graph.
func (g *Graph) Reshape(x Value, shape ...int64) Value {
	return g.ReshapeV(x, g.Ints(shape...))
}

// ReshapeV reshapes x to a shape computed in the graph.
func (g *Graph) ReshapeV(x, shape Value) Value { return g.Node("Reshape", []Value{x, shape}) }

// Transpose permutes x's axes.
func (g *Graph) Transpose(x Value, perm ...int64) Value {
	return g.Node("Transpose", []Value{x}, AttrInts("perm", perm...))
}

// Concat joins values along axis.
func (g *Graph) Concat(axis int, vs ...Value) Value {
	if len(vs) == 0 {
		g.fail("Concat with no inputs")
		return Value{}
	}
	return g.Node("Concat", vs, AttrInt("axis", int64(axis)))
}

// Slice takes x[starts:ends] along axes (one entry per axis).
func (g *Graph) Slice(x Value, starts, ends, axes []int64) Value {
	return g.SliceV(x, g.Ints(starts...), g.Ints(ends...), g.Ints(axes...))
}

// SliceV is Slice with bounds computed in the graph.
func (g *Graph) SliceV(x, starts, ends, axes Value) Value {
	return g.Node("Slice", []Value{x, starts, ends, axes})
}

// Gather picks entries of data along axis by integer indices (embedding lookup
// with axis 0).
func (g *Graph) Gather(data, indices Value, axis int) Value {
	return g.Node("Gather", []Value{data, indices}, AttrInt("axis", int64(axis)))
}

// Unsqueeze inserts size-1 axes.
func (g *Graph) Unsqueeze(x Value, axes ...int64) Value {
	return g.Node("Unsqueeze", []Value{x, g.Ints(axes...)})
}

// Squeeze removes size-1 axes.
func (g *Graph) Squeeze(x Value, axes ...int64) Value {
	return g.Node("Squeeze", []Value{x, g.Ints(axes...)})
}

// ReduceMean averages over axes (an attribute until opset 18).
func (g *Graph) ReduceMean(x Value, keepDims bool, axes ...int64) Value {
	k := int64(0)
	if keepDims {
		k = 1
	}
	return g.Node("ReduceMean", []Value{x}, AttrInts("axes", axes...), AttrInt("keepdims", k))
}

// ReduceSum sums over axes (opset 13+: axes is an input).
func (g *Graph) ReduceSum(x Value, keepDims bool, axes ...int64) Value {
	k := int64(0)
	if keepDims {
		k = 1
	}
	return g.Node("ReduceSum", []Value{x, g.Ints(axes...)}, AttrInt("keepdims", k))
}

// ArgMax is the index of the largest entry along axis, as int64.
func (g *Graph) ArgMax(x Value, axis int, keepDims bool) Value {
	k := int64(0)
	if keepDims {
		k = 1
	}
	return g.NodeTyped("ArgMax", Int64, []Value{x}, AttrInt("axis", int64(axis)), AttrInt("keepdims", k))
}

// Equal compares elementwise, giving bool.
func (g *Graph) Equal(a, b Value) Value { return g.NodeTyped("Equal", Bool, []Value{a, b}) }

// Where picks a where cond holds, else b.
func (g *Graph) Where(cond, a, b Value) Value {
	return g.NodeTyped("Where", a.DType, []Value{cond, a, b})
}

// Conv is a 2-D convolution of x [N,C,H,W] with w [M,C/group,kh,kw] and
// optional bias b [M]. Attrs are ONNX's: AttrInts("pads", 1, 1, 1, 1),
// AttrInts("strides", 2, 2), AttrInt("group", g)...
func (g *Graph) Conv(x, w, b Value, attrs ...Attr) Value {
	if !g.check("Conv", x, w) {
		return Value{}
	}
	return g.Node("Conv", []Value{x, w, b}, attrs...)
}

// Conv2D is the common case: square kernel from w, stride, and symmetric
// padding pad on every side.
func (g *Graph) Conv2D(x, w, b Value, stride, pad int) Value {
	p := int64(pad)
	s := int64(stride)
	return g.Conv(x, w, b, AttrInts("strides", s, s), AttrInts("pads", p, p, p, p))
}

// Upsample2x is nearest-neighbour upsampling of NCHW x by 2 in H and W: every
// pixel becomes a 2x2 block. "asymmetric" + "floor" makes the index mapping
// exactly out/2, the same as torch's F.interpolate(mode="nearest").
func (g *Graph) Upsample2x(x Value) Value {
	scales := g.Const([]float32{1, 1, 2, 2}, 4)
	return g.Node("Resize", []Value{x, {}, scales},
		AttrString("mode", "nearest"),
		AttrString("coordinate_transformation_mode", "asymmetric"),
		AttrString("nearest_mode", "floor"))
}

// LayerNorm normalises over the last axis with learned scale and bias
// (LayerNormalization, opset 17).
func (g *Graph) LayerNorm(x, scale, bias Value, eps float32) Value {
	if !g.check("LayerNorm", x, scale) {
		return Value{}
	}
	return g.Node("LayerNormalization", []Value{x, scale, bias}, AttrInt("axis", -1), AttrFloat("epsilon", eps))
}

// GroupNorm is torch's GroupNorm on NCHW (or any N,C,...) x: statistics over
// each of groups channel groups and all spatial positions, then a per-channel
// scale and bias of shape [C]. Opset 17 has no GroupNormalization (and
// opset 18's version was redefined in 21), so it is composed: reshape to
// [N, groups, -1], mean and variance with ReduceMean, normalise, reshape back
// to x's own shape, then the affine part.
func (g *Graph) GroupNorm(x Value, groups int, scale, bias Value, eps float32) Value {
	if !g.check("GroupNorm", x, scale, bias) {
		return Value{}
	}
	g.Push("GroupNorm")
	defer g.Pop()
	r := g.Reshape(x, 0, int64(groups), -1)
	mean := g.ReduceMean(r, true, 2)
	d := g.Sub(r, mean)
	variance := g.ReduceMean(g.Mul(d, d), true, 2)
	n := g.Div(d, g.Sqrt(g.Add(variance, g.ScalarOf(x.DType, eps))))
	n = g.ReshapeV(n, g.Shape(x))
	// [C] -> [C,1,1] so it broadcasts over H and W.
	s := g.Unsqueeze(scale, 1, 2)
	b := g.Unsqueeze(bias, 1, 2)
	return g.Add(g.Mul(n, s), b)
}

// Attention is multi-head scaled dot-product attention on [B, L, D] query and
// [B, S, D] key/value tensors, already projected; D must split into heads.
// mask, if valid, is added to the [B, heads, L, S] scores before softmax
// (a causal mask holds 0 and a large negative number). The result is
// [B, L, D].
func (g *Graph) Attention(q, k, v Value, heads, dim int, mask Value) Value {
	if !g.check("Attention", q, k, v) {
		return Value{}
	}
	if heads <= 0 || dim%heads != 0 {
		g.fail("Attention: width %d does not split into %d heads", dim, heads)
		return Value{}
	}
	g.Push("Attention")
	defer g.Pop()
	dh := int64(dim / heads)
	h := int64(heads)
	qh := g.Transpose(g.Reshape(q, 0, 0, h, dh), 0, 2, 1, 3) // [B,h,L,dh]
	kh := g.Transpose(g.Reshape(k, 0, 0, h, dh), 0, 2, 3, 1) // [B,h,dh,S]
	vh := g.Transpose(g.Reshape(v, 0, 0, h, dh), 0, 2, 1, 3) // [B,h,S,dh]
	// Scaling q before the product (rather than the scores after it) keeps
	// the product's magnitude down, as the reference implementations do.
	qh = g.Mul(qh, g.ScalarOf(q.DType, float32(1/math.Sqrt(float64(dh)))))
	s := g.MatMul(qh, kh)
	if mask.Valid() {
		s = g.Add(s, mask)
	}
	p := g.Softmax(s, -1)
	o := g.Transpose(g.MatMul(p, vh), 0, 2, 1, 3) // [B,L,h,dh]
	return g.Reshape(o, 0, 0, -1)
}
