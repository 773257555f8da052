package vae

import (
	"fmt"
	"math"
	"math/rand/v2"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	timage "github.com/gomlx/gomlx/pkg/core/tensors/images"

	"github.com/face0/face0/training/model"
)

// ConvImpl selects how 3×3 convolutions are built (as in training/sd).
type ConvImpl int

const (
	// ConvIm2col zero-pads with Concatenate (one zero row the out-of-image
	// taps point at), gathers the 3×3 patches with Gather and multiplies
	// with one matrix product; it runs on GoMLX's pure-Go backend.
	ConvIm2col ConvImpl = iota
	// ConvNative is GoMLX's ConvGeneral: use it on the XLA backends.
	ConvNative
)

// Options are choices that change how the graph is built, not what it computes.
type Options struct {
	Conv ConvImpl
}

// LogvarMin and LogvarMax clamp the log-variance, as diffusers'
// DiagonalGaussianDistribution does.
const (
	LogvarMin = -30
	LogvarMax = 20
)

// Activations are channels-last, [B,H,W,C], inside the graph.

type fwd struct {
	c    Config
	w    model.Lookup
	opts Options
}

// linearW is x·Wᵀ + b over the last axis of x, W in torch's [out, in]
// layout (or a 1×1 conv kernel [out,in,1,1]).
func linearW(x, W, b *Node) *Node {
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

func (f fwd) linear(name string, x *Node) *Node {
	return linearW(x, f.w(name+".weight"), f.w(name+".bias"))
}

// conv3 is a 3×3 convolution of x [B,H,W,C] with a torch kernel [O,C,3,3]
// and bias [O], stride s, and zero padding lo before and hi after each
// spatial axis: (1,1) for the usual convs, (0,1) for the downsamplers
// (diffusers pads (0,1,0,1) and convolves with padding 0).
func (f fwd) conv3(name string, x *Node, s, lo, hi int) *Node {
	K, bias := f.w(name+".weight"), f.w(name+".bias")
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	O := K.Shape().Dimensions[0]
	k := TransposeAllAxes(K, 2, 3, 1, 0) // [3,3,C,O]
	if f.opts.Conv == ConvNative {
		y := Convolve(x, k).ChannelsAxis(timage.ChannelsLast).Strides(s).
			PaddingPerDim([][2]int{{lo, hi}, {lo, hi}}).Done()
		return Add(y, Reshape(bias, 1, 1, 1, O))
	}
	Ho, Wo := (H+lo+hi-3)/s+1, (W+lo+hi-3)/s+1
	flat := Concatenate([]*Node{Reshape(x, B, H*W, C), Zeros(x.Graph(), shapes.Make(x.DType(), B, 1, C))}, 1)
	idx := Const(x.Graph(), im2colIndices(B, H, W, Ho, Wo, s, lo))
	cols := Reshape(Gather(flat, idx), B*Ho*Wo, 9*C)
	y := linearW(cols, Transpose(Reshape(k, 9*C, O), 0, 1), bias)
	return Reshape(y, B, Ho, Wo, O)
}

// im2colIndices are Gather indices [B, Ho·Wo·9, 2] = (b, position) into x
// flattened to [B, H·W+1, C], whose last row is zeros: the tap (ky,kx) of
// output (oy,ox) reads input (oy·s-lo+ky, ox·s-lo+kx), or the zero row
// outside the image.
func im2colIndices(B, H, W, Ho, Wo, s, lo int) [][][]int32 {
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

// groupNorm is torch's GroupNorm (ε 1e-6) on channels-last x [B,H,W,C].
func (f fwd) groupNorm(name string, x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	G := f.c.NormNumGroups
	r := Reshape(x, B, H*W, G, C/G)
	mean := ReduceAndKeep(r, ReduceMean, 1, 3)
	dv := Sub(r, mean)
	variance := ReduceAndKeep(Square(dv), ReduceMean, 1, 3)
	n := Reshape(Div(dv, Sqrt(AddScalar(variance, normEps))), B, H, W, C)
	return Add(Mul(n, Reshape(f.w(name+".weight"), 1, 1, 1, C)), Reshape(f.w(name+".bias"), 1, 1, 1, C))
}

func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// upsample is nearest-neighbour 2× of [B,H,W,C].
func upsample(x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	y := BroadcastToDims(Reshape(x, B, H, 1, W, 1, C), B, H, 2, W, 2, C)
	return Reshape(y, B, 2*H, 2*W, C)
}

// take is x[i] along the leading axis, through Gather.
func take(x *Node, i int) *Node {
	rest := x.Shape().Dimensions[1:]
	return Reshape(Gather(x, Const(x.Graph(), [][]int32{{int32(i)}})), rest...)
}

func (f fwd) resnet(r resnet, x *Node) *Node {
	h := f.conv3(r.Name+".conv1", silu(f.groupNorm(r.Name+".norm1", x)), 1, 1, 1)
	h = f.conv3(r.Name+".conv2", silu(f.groupNorm(r.Name+".norm2", h)), 1, 1, 1)
	if r.In != r.Out {
		x = f.linear(r.Name+".conv_shortcut", x)
	}
	return Add(x, h)
}

// attention is the mid block's Attention: GroupNorm, one head over all C
// channels (q, k, v with bias), to_out.0, + residual.
func (f fwd) attention(name string, x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	L := H * W
	h := Reshape(f.groupNorm(name+".group_norm", x), B, L, C)
	q := MulScalar(f.linear(name+".to_q", h), 1/math.Sqrt(float64(C)))
	k := f.linear(name+".to_k", h)
	v := f.linear(name+".to_v", h)
	s := model.Dot3(q, Transpose(k, 1, 2)) // [B,L,L]
	o := model.Dot3(Softmax(s, -1), v)     // [B,L,C]
	o = f.linear(name+".to_out.0", o)
	return Add(Reshape(o, B, H, W, C), x)
}

func (f fwd) mid(m mid, h *Node) *Node {
	rs := m.resnets()
	h = f.resnet(rs[0], h)
	h = f.attention(m.attention(), h)
	return f.resnet(rs[1], h)
}

func (c Config) checkSide(what string, H, W, mult int) {
	if H%mult != 0 || W%mult != 0 {
		panic(fmt.Sprintf("vae: %s %dx%d is not a multiple of %d", what, H, W, mult))
	}
}

// Encode is diffusers' AutoencoderKL.encode on sample [B,InChannels,H,W]
// (images in [-1, 1]): it returns the latent distribution's mean and its
// log-variance (clamped to [LogvarMin, LogvarMax]), each
// [B,LatentChannels,H/8,W/8]. The mean is latent_dist.mode(); neither is
// multiplied by ScalingFactor. H and W must be multiples of c.Downscale().
func Encode(c Config, w model.Lookup, sample *Node, opts Options) (mean, logvar *Node) {
	d := sample.Shape().Dimensions
	c.checkSide("sample", d[2], d[3], c.Downscale())
	f := fwd{c, w, opts}
	h := f.conv3("encoder.conv_in", TransposeAllAxes(sample, 0, 2, 3, 1), 1, 1, 1)
	for _, s := range c.encoderStages() {
		for _, r := range s.Resnets {
			h = f.resnet(r, h)
		}
		if s.Sampler != "" {
			h = f.conv3(s.Sampler, h, 2, 0, 1)
		}
	}
	h = f.mid(mid{"encoder.mid_block", c.top()}, h)
	h = silu(f.groupNorm("encoder.conv_norm_out", h))
	h = f.conv3("encoder.conv_out", h, 1, 1, 1) // [B,h,w,2L]: moments
	// quant_conv, its two output halves (mean, logvar) computed separately
	// from the two halves of its weight.
	L := c.LatentChannels
	Wq, bq := Reshape(w("quant_conv.weight"), 2, L, 2*L), Reshape(w("quant_conv.bias"), 2, L)
	mean = linearW(h, take(Wq, 0), take(bq, 0))
	logvar = ClipScalar(linearW(h, take(Wq, 1), take(bq, 1)), LogvarMin, LogvarMax)
	return TransposeAllAxes(mean, 0, 3, 1, 2), TransposeAllAxes(logvar, 0, 3, 1, 2)
}

// SampleLatent draws from the latent distribution: mean + exp(logvar/2)·noise,
// noise being standard normal of mean's shape (see Noise).
func SampleLatent(mean, logvar, noise *Node) *Node {
	return Add(mean, Mul(Exp(MulScalar(logvar, 0.5)), noise))
}

// Noise is standard normal noise of the given shape from seed (PCG), the
// same for the same seed on every machine: the noise SampleLatent takes.
func Noise(seed uint64, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// Decode is diffusers' AutoencoderKL.decode on latent_sample
// [B,LatentChannels,h,w] (already divided by ScalingFactor): it returns the
// image [B,OutChannels,8h,8w] (for SD 1.x; c.Downscale()× in general), in
// about [-1, 1].
func Decode(c Config, w model.Lookup, latent *Node, opts Options) *Node {
	f := fwd{c, w, opts}
	h := f.linear("post_quant_conv", TransposeAllAxes(latent, 0, 2, 3, 1))
	h = f.conv3("decoder.conv_in", h, 1, 1, 1)
	h = f.mid(mid{"decoder.mid_block", c.top()}, h)
	for _, s := range c.decoderStages() {
		for _, r := range s.Resnets {
			h = f.resnet(r, h)
		}
		if s.Sampler != "" {
			h = f.conv3(s.Sampler, upsample(h), 1, 1, 1)
		}
	}
	h = silu(f.groupNorm("decoder.conv_norm_out", h))
	h = f.conv3("decoder.conv_out", h, 1, 1, 1)
	return TransposeAllAxes(h, 0, 3, 1, 2)
}
