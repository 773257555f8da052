package layers

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	timage "github.com/gomlx/gomlx/pkg/core/tensors/images"

	"github.com/face0/face0/training/model"
)

// The forward passes keep activations channels-last, [B,H,W,C]: 1×1
// convolutions and transformer tokens are then plain reshapes.

// ConvImpl selects how 3×3 convolutions are built.
type ConvImpl int

const (
	// ConvIm2col zero-pads with Concatenate (one zero row the out-of-image
	// taps point at), gathers the 3×3 patches with Gather and multiplies
	// with one matrix product. Its gradient needs only Gather's
	// (scatter-add) and Dot's, so it trains on GoMLX's pure-Go backend,
	// which lacks the Pad and Reverse ops ConvGeneral's gradient needs.
	ConvIm2col ConvImpl = iota
	// ConvNative is GoMLX's ConvGeneral: use it on the XLA backends.
	ConvNative
)

// Linear is x·Wᵀ + b over the last axis of x (any rank ≥ 2), with W in
// torch's [out, in] layout or a 1×1 conv kernel [out,in,1,1]; b may be nil.
// It goes through model.Dot3, whose gradient is two matrix products
// (model.Release the graph after its gradients).
func Linear(x, W, b *Node) *Node {
	dims := x.Shape().Dimensions
	in := dims[len(dims)-1]
	out := W.Shape().Dimensions[0]
	if W.Rank() != 2 {
		W = Reshape(W, out, -1)
	}
	rows := x.Shape().Size() / in
	y := Reshape(model.Dot3(Reshape(x, 1, rows, in), Reshape(Transpose(W, 0, 1), 1, in, out)), rows, out)
	if b != nil {
		y = Add(y, InsertAxes(b, 0))
	}
	outDims := append(append([]int(nil), dims[:len(dims)-1]...), out)
	return Reshape(y, outDims...)
}

// Conv3 is a 3×3 convolution of x [B,H,W,C] with a torch kernel K
// [O,C,3,3] and bias [O], stride s, and zero padding lo before and hi after
// each spatial axis ((1,1) for the usual convs; (0,1) for diffusers' VAE
// downsamplers, which pad (0,1,0,1) and convolve with padding 0).
func Conv3(impl ConvImpl, x, K, bias *Node, s, lo, hi int) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	O := K.Shape().Dimensions[0]
	k := TransposeAllAxes(K, 2, 3, 1, 0) // [3,3,C,O]
	if impl == ConvNative {
		y := Convolve(x, k).ChannelsAxis(timage.ChannelsLast).Strides(s).
			PaddingPerDim([][2]int{{lo, hi}, {lo, hi}}).Done()
		return Add(y, Reshape(bias, 1, 1, 1, O))
	}
	Ho, Wo := (H+lo+hi-3)/s+1, (W+lo+hi-3)/s+1
	flat := Concatenate([]*Node{Reshape(x, B, H*W, C), Zeros(x.Graph(), shapes.Make(x.DType(), B, 1, C))}, 1)
	idx := Const(x.Graph(), Im2colIndices(B, H, W, Ho, Wo, s, lo))
	cols := Reshape(Gather(flat, idx), B*Ho*Wo, 9*C)
	y := Linear(cols, Transpose(Reshape(k, 9*C, O), 0, 1), bias)
	return Reshape(y, B, Ho, Wo, O)
}

// Im2colIndices are Gather indices [B, Ho·Wo·9, 2] = (b, position) into x
// flattened to [B, H·W+1, C], whose last row is zeros: the tap (ky,kx) of
// output (oy,ox) reads input (oy·s-lo+ky, ox·s-lo+kx), or the zero row
// outside the image.
func Im2colIndices(B, H, W, Ho, Wo, s, lo int) [][][]int32 {
	out := make([][][]int32, B)
	for b := range B {
		rows := make([][]int32, 0, Ho*Wo*9)
		for oy := range Ho {
			for ox := range Wo {
				for ky := range 3 {
					for kx := range 3 {
						iy, ix := oy*s-lo+ky, ox*s-lo+kx
						pos := H * W
						if iy >= 0 && iy < H && ix >= 0 && ix < W {
							pos = iy*W + ix
						}
						rows = append(rows, []int32{int32(b), int32(pos)})
					}
				}
			}
		}
		out[b] = rows
	}
	return out
}

// GroupNorm is torch's GroupNorm with groups groups on channels-last x
// [B,H,W,C], scale and shift [C].
func GroupNorm(x, scale, shift *Node, groups int, eps float64) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	r := Reshape(x, B, H*W, groups, C/groups)
	mean := ReduceAndKeep(r, ReduceMean, 1, 3)
	dv := Sub(r, mean)
	variance := ReduceAndKeep(Square(dv), ReduceMean, 1, 3)
	n := Reshape(Div(dv, Sqrt(AddScalar(variance, eps))), B, H, W, C) // Rsqrt has no gradient in v0.26
	return Add(Mul(n, Reshape(scale, 1, 1, 1, C)), Reshape(shift, 1, 1, 1, C))
}

// LayerNorm is torch's LayerNorm over the last axis (biased variance).
func LayerNorm(x, scale, shift *Node, eps float64) *Node {
	last := x.Rank() - 1
	mean := ReduceAndKeep(x, ReduceMean, last)
	d := Sub(x, mean)
	variance := ReduceAndKeep(Square(d), ReduceMean, last)
	n := Div(d, Sqrt(AddScalar(variance, eps))) // Rsqrt has no gradient in v0.26
	return Add(Mul(n, ExpandLeftToRank(scale, x.Rank())), ExpandLeftToRank(shift, x.Rank()))
}

// SiLU is x·σ(x).
func SiLU(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// GELU is the exact (erf) GELU.
func GELU(x *Node) *Node {
	return Mul(x, MulScalar(OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))), 0.5))
}

// Upsample is nearest-neighbour 2× of [B,H,W,C].
func Upsample(x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	y := BroadcastToDims(Reshape(x, B, H, 1, W, 1, C), B, H, 2, W, 2, C)
	return Reshape(y, B, 2*H, 2*W, C)
}

// Take is x[i] along the leading axis, through Gather (whose gradient,
// unlike Slice's, works on the pure-Go backend).
func Take(x *Node, i int) *Node {
	rest := x.Shape().Dimensions[1:]
	return Reshape(Gather(x, Const(x.Graph(), [][]int32{{int32(i)}})), rest...)
}

// Attention is multi-head scaled dot-product attention of projected
// q [B,L,W] over k, v [B,S,W] with heads heads; mask [L,S], added to the
// scores, may be nil. The products go through model.Dot3 (see Linear).
func Attention(q, k, v, mask *Node, heads int) *Node {
	B, L, W := q.Shape().Dimensions[0], q.Shape().Dimensions[1], q.Shape().Dimensions[2]
	S := k.Shape().Dimensions[1]
	dh := W / heads
	qh := TransposeAllAxes(Reshape(q, B, L, heads, dh), 0, 2, 1, 3) // [B,h,L,dh]
	kh := TransposeAllAxes(Reshape(k, B, S, heads, dh), 0, 2, 3, 1) // [B,h,dh,S]
	vh := TransposeAllAxes(Reshape(v, B, S, heads, dh), 0, 2, 1, 3) // [B,h,S,dh]
	qh = MulScalar(qh, 1/math.Sqrt(float64(dh)))
	s := Reshape(model.Dot3(Reshape(qh, B*heads, L, dh), Reshape(kh, B*heads, dh, S)), B, heads, L, S)
	if mask != nil {
		s = Add(s, Reshape(mask, 1, 1, L, S))
	}
	p := Softmax(s, -1)
	o := Reshape(model.Dot3(Reshape(p, B*heads, L, S), Reshape(vh, B*heads, S, dh)), B, heads, L, dh)
	return Reshape(TransposeAllAxes(o, 0, 2, 1, 3), B, L, W)
}

// Options are choices that change how a network's graph is built, not what
// it computes; training/sd and training/vae take the same ones.
type Options struct {
	Conv ConvImpl
}
