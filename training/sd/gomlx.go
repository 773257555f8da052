package sd

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	timage "github.com/gomlx/gomlx/pkg/core/tensors/images"

	"github.com/face0/face0/training/model"
)

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

// Options are choices that change how the graph is built, not what it computes.
type Options struct {
	Conv ConvImpl
}

// Transformers' GroupNorm uses ε = 1e-6 (diffusers' Transformer2DModel);
// LayerNorms 1e-5.
const (
	transformerNormEps = 1e-6
	layerNormEps       = 1e-5
)

// Internally the forward pass keeps activations channels-last, [B,H,W,C]:
// 1×1 convolutions and the transformers' tokens are then plain reshapes.

type fwd struct {
	c    Config
	w    model.Lookup
	opts Options
}

// linear is x·Wᵀ + b over the last axis of x (any rank ≥ 2), with W in
// torch's [out, in] layout. It goes through model.Dot3, whose gradient is
// two matrix products (model.Release the graph after its gradients).
func (f fwd) linear(name string, x *Node, bias bool) *Node {
	W := f.w(name + ".weight")
	return f.linearW(x, W, biasOf(f, name, bias))
}

func biasOf(f fwd, name string, bias bool) *Node {
	if !bias {
		return nil
	}
	return f.w(name + ".bias")
}

func (f fwd) linearW(x, W, b *Node) *Node {
	dims := x.Shape().Dimensions
	in := dims[len(dims)-1]
	out := W.Shape().Dimensions[0]
	if W.Rank() != 2 {
		W = Reshape(W, out, -1) // a 1×1 conv kernel [out,in,1,1]
	}
	rows := x.Shape().Size() / in
	y := Reshape(model.Dot3(Reshape(x, 1, rows, in), Reshape(Transpose(W, 0, 1), 1, in, out)), rows, out)
	if b != nil {
		y = Add(y, InsertAxes(b, 0))
	}
	outDims := append(append([]int(nil), dims[:len(dims)-1]...), out)
	return Reshape(y, outDims...)
}

// conv3 is a 3×3 convolution with padding 1 and the given stride on x
// [B,H,W,C] with a torch kernel [O,C,3,3] and bias [O].
func (f fwd) conv3(name string, x *Node, stride int) *Node {
	K, bias := f.w(name+".weight"), f.w(name+".bias")
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	O := K.Shape().Dimensions[0]
	k := TransposeAllAxes(K, 2, 3, 1, 0) // [3,3,C,O]
	var y *Node
	switch f.opts.Conv {
	case ConvNative:
		y = Convolve(x, k).ChannelsAxis(timage.ChannelsLast).Strides(stride).
			PaddingPerDim([][2]int{{1, 1}, {1, 1}}).Done()
		y = Add(y, Reshape(bias, 1, 1, 1, O))
	default:
		Ho, Wo := (H-1)/stride+1, (W-1)/stride+1
		flat := Concatenate([]*Node{Reshape(x, B, H*W, C), Zeros(x.Graph(), shapes.Make(x.DType(), B, 1, C))}, 1)
		idx := Const(x.Graph(), im2colIndices(B, H, W, Ho, Wo, stride))
		cols := Reshape(Gather(flat, idx), B*Ho*Wo, 9*C)
		y = f.linearW(cols, Transpose(Reshape(k, 9*C, O), 0, 1), bias)
		y = Reshape(y, B, Ho, Wo, O)
	}
	return y
}

// im2colIndices are Gather indices [B, Ho·Wo·9, 2] = (b, position) into x
// flattened to [B, H·W+1, C], whose last row is zeros: the tap (ky,kx) of
// output (oy,ox) reads input (oy·s-1+ky, ox·s-1+kx), or the zero row
// outside the image.
func im2colIndices(B, H, W, Ho, Wo, s int) [][][]int32 {
	out := make([][][]int32, B)
	for b := range B {
		rows := make([][]int32, 0, Ho*Wo*9)
		for oy := range Ho {
			for ox := range Wo {
				for ky := range 3 {
					for kx := range 3 {
						iy, ix := oy*s-1+ky, ox*s-1+kx
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

// groupNorm is torch's GroupNorm on channels-last x [B,H,W,C].
func (f fwd) groupNorm(name string, x *Node, eps float64) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	G := f.c.NormNumGroups
	r := Reshape(x, B, H*W, G, C/G)
	mean := ReduceAndKeep(r, ReduceMean, 1, 3)
	dv := Sub(r, mean)
	variance := ReduceAndKeep(Square(dv), ReduceMean, 1, 3)
	n := Reshape(Div(dv, Sqrt(AddScalar(variance, eps))), B, H, W, C) // Rsqrt has no gradient in v0.26
	return Add(Mul(n, Reshape(f.w(name+".weight"), 1, 1, 1, C)), Reshape(f.w(name+".bias"), 1, 1, 1, C))
}

func (f fwd) layerNorm(name string, x *Node) *Node {
	last := x.Rank() - 1
	mean := ReduceAndKeep(x, ReduceMean, last)
	d := Sub(x, mean)
	variance := ReduceAndKeep(Square(d), ReduceMean, last)
	n := Div(d, Sqrt(AddScalar(variance, layerNormEps)))
	return Add(Mul(n, ExpandLeftToRank(f.w(name+".weight"), x.Rank())), ExpandLeftToRank(f.w(name+".bias"), x.Rank()))
}

func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

func gelu(x *Node) *Node {
	return Mul(x, MulScalar(OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))), 0.5))
}

// upsample is nearest-neighbour 2× of [B,H,W,C].
func upsample(x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	y := BroadcastToDims(Reshape(x, B, H, 1, W, 1, C), B, H, 2, W, 2, C)
	return Reshape(y, B, 2*H, 2*W, C)
}

// take is x[i] along the leading axis, through Gather (whose gradient,
// unlike Slice's, works on the pure-Go backend).
func take(x *Node, i int) *Node {
	rest := x.Shape().Dimensions[1:]
	y := Gather(x, Const(x.Graph(), [][]int32{{int32(i)}}))
	return Reshape(y, rest...)
}

func (f fwd) resnet(r resnet, x, tact *Node) *Node {
	eps := f.c.NormEps
	h := f.conv3(r.Name+".conv1", silu(f.groupNorm(r.Name+".norm1", x, eps)), 1)
	t := f.linear(r.Name+".time_emb_proj", tact, true) // [B,O]
	h = Add(h, Reshape(t, t.Shape().Dimensions[0], 1, 1, r.Out))
	h = f.conv3(r.Name+".conv2", silu(f.groupNorm(r.Name+".norm2", h, eps)), 1)
	if r.In != r.Out {
		x = f.linear(r.Name+".conv_shortcut", x, true)
	}
	return Add(x, h)
}

func (f fwd) attention(name string, x, ctx *Node) *Node {
	heads := f.c.AttentionHeadDim
	q := f.linear(name+".to_q", x, false)
	k := f.linear(name+".to_k", ctx, false)
	v := f.linear(name+".to_v", ctx, false)
	B, L, W := q.Shape().Dimensions[0], q.Shape().Dimensions[1], q.Shape().Dimensions[2]
	S := k.Shape().Dimensions[1]
	dh := W / heads
	qh := TransposeAllAxes(Reshape(q, B, L, heads, dh), 0, 2, 1, 3) // [B,h,L,dh]
	kh := TransposeAllAxes(Reshape(k, B, S, heads, dh), 0, 2, 3, 1) // [B,h,dh,S]
	vh := TransposeAllAxes(Reshape(v, B, S, heads, dh), 0, 2, 1, 3) // [B,h,S,dh]
	qh = MulScalar(qh, 1/math.Sqrt(float64(dh)))
	s := Reshape(model.Dot3(Reshape(qh, B*heads, L, dh), Reshape(kh, B*heads, dh, S)), B, heads, L, S)
	p := Softmax(s, -1)
	o := Reshape(model.Dot3(Reshape(p, B*heads, L, S), Reshape(vh, B*heads, S, dh)), B, heads, L, dh)
	o = Reshape(TransposeAllAxes(o, 0, 2, 1, 3), B, L, W)
	return f.linear(name+".to_out.0", o, true)
}

// geglu is diffusers' GEGLU feed-forward: proj → (hidden, gate) halves,
// hidden·GELU(gate), then ff.net.2. The halves are taken from the weight
// (as two matrices) rather than from the product, without Slice.
func (f fwd) feedForward(name string, x *Node) *Node {
	W, b := f.w(name+".net.0.proj.weight"), f.w(name+".net.0.proj.bias")
	d := W.Shape().Dimensions
	inner, C := d[0]/2, d[1]
	Wr, br := Reshape(W, 2, inner, C), Reshape(b, 2, inner)
	hidden := f.linearW(x, take(Wr, 0), take(br, 0))
	gate := f.linearW(x, take(Wr, 1), take(br, 1))
	return f.linear(name+".net.2", Mul(hidden, gelu(gate)), true)
}

func (f fwd) transformer(t transformer, x, ctx *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	h := f.groupNorm(t.Name+".norm", x, transformerNormEps)
	h = Reshape(f.linear(t.Name+".proj_in", h, true), B, H*W, C)
	b := t.Name + ".transformer_blocks.0"
	a := f.layerNorm(b+".norm1", h)
	h = Add(h, f.attention(b+".attn1", a, a))
	h = Add(h, f.attention(b+".attn2", f.layerNorm(b+".norm2", h), ctx))
	h = Add(h, f.feedForward(b+".ff", f.layerNorm(b+".norm3", h)))
	h = f.linear(t.Name+".proj_out", Reshape(h, B, H, W, C), true)
	return Add(h, x)
}

// timeFreqs are diffusers' get_timestep_embedding frequencies,
// exp(-ln(10⁴)·i/(half - freq_shift)), i < half.
func (c Config) timeFreqs() []float32 {
	half := c.TimeFreqDim() / 2
	out := make([]float32, half)
	for i := range out {
		out[i] = float32(math.Exp(-math.Log(10000) * float64(i) / float64(half-c.FreqShift)))
	}
	return out
}

// Forward predicts ε from sample [B,C,H,W], timestep [B] (float) and
// encoder_hidden_states [B,L,D], returning [B,OutChannels,H,W]: diffusers'
// UNet2DConditionModel forward. H and W must be multiples of
// c.Downscale(). w looks weights up by their diffusers names; after taking
// gradients call model.Release on the graph.
func Forward(c Config, w model.Lookup, sample, timestep, ctx *Node, opts Options) *Node {
	d := sample.Shape().Dimensions
	B, H, W := d[0], d[2], d[3]
	if H%c.Downscale() != 0 || W%c.Downscale() != 0 {
		panic(fmt.Sprintf("sd: sample %dx%d is not a multiple of %d", H, W, c.Downscale()))
	}
	f := fwd{c, w, opts}
	g := sample.Graph()

	half := c.TimeFreqDim() / 2
	arg := Mul(Reshape(ConvertDType(timestep, dtypes.Float32), B, 1), Reshape(Const(g, c.timeFreqs()), 1, half))
	temb := Concatenate([]*Node{Cos(arg), Sin(arg)}, 1) // flip_sin_to_cos
	temb = f.linear("time_embedding.linear_1", temb, true)
	temb = f.linear("time_embedding.linear_2", silu(temb), true)
	tact := silu(temb) // every resnet applies SiLU before time_emb_proj

	h := f.conv3("conv_in", TransposeAllAxes(sample, 0, 2, 3, 1), 1)
	skips := []*Node{h}
	p := c.plan()
	for _, b := range p.Down {
		for j, r := range b.Resnets {
			h = f.resnet(r, h, tact)
			if j < len(b.Attns) {
				h = f.transformer(b.Attns[j], h, ctx)
			}
			skips = append(skips, h)
		}
		if b.Sampler != "" {
			h = f.conv3(b.Sampler, h, 2)
			skips = append(skips, h)
		}
	}
	h = f.resnet(p.Mid.Resnets[0], h, tact)
	h = f.transformer(p.Mid.Attns[0], h, ctx)
	h = f.resnet(p.Mid.Resnets[1], h, tact)
	for _, b := range p.Up {
		for j, r := range b.Resnets {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = Concatenate([]*Node{h, skip}, 3)
			h = f.resnet(r, h, tact)
			if j < len(b.Attns) {
				h = f.transformer(b.Attns[j], h, ctx)
			}
		}
		if b.Sampler != "" {
			h = f.conv3(b.Sampler, upsample(h), 1)
		}
	}
	if len(skips) != 0 {
		panic(fmt.Sprintf("sd: %d skip connections left over: the plan is inconsistent", len(skips)))
	}
	h = silu(f.groupNorm("conv_norm_out", h, c.NormEps))
	h = f.conv3("conv_out", h, 1)
	return TransposeAllAxes(h, 0, 3, 1, 2)
}
