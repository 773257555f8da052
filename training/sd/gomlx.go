package sd

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// ConvImpl selects how 3×3 convolutions are built (see layers.ConvImpl).
type ConvImpl = layers.ConvImpl

// The convolution builds: ConvIm2col trains on the pure-Go backend,
// ConvNative is GoMLX's ConvGeneral for the XLA backends.
const (
	ConvIm2col = layers.ConvIm2col
	ConvNative = layers.ConvNative
)

// Options are choices that change how the graph is built, not what it
// computes (shared with the other networks: see layers.Options).
type Options = layers.Options

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

// linear is layers.Linear with name's weight (and bias, if bias).
func (f fwd) linear(name string, x *Node, bias bool) *Node {
	var b *Node
	if bias {
		b = f.w(name + ".bias")
	}
	return layers.Linear(x, f.w(name+".weight"), b)
}

// conv3 is a 3×3 convolution with padding 1 and the given stride on x
// [B,H,W,C] with a torch kernel [O,C,3,3] and bias [O].
func (f fwd) conv3(name string, x *Node, stride int) *Node {
	return layers.Conv3(f.opts.Conv, x, f.w(name+".weight"), f.w(name+".bias"), stride, 1, 1)
}

// groupNorm is torch's GroupNorm on channels-last x [B,H,W,C].
func (f fwd) groupNorm(name string, x *Node, eps float64) *Node {
	return layers.GroupNorm(x, f.w(name+".weight"), f.w(name+".bias"), f.c.NormNumGroups, eps)
}

func (f fwd) layerNorm(name string, x *Node) *Node {
	return layers.LayerNorm(x, f.w(name+".weight"), f.w(name+".bias"), layerNormEps)
}

func (f fwd) resnet(r resnet, x, tact *Node) *Node {
	eps := f.c.NormEps
	h := f.conv3(r.Name+".conv1", layers.SiLU(f.groupNorm(r.Name+".norm1", x, eps)), 1)
	t := f.linear(r.Name+".time_emb_proj", tact, true) // [B,O]
	h = Add(h, Reshape(t, t.Shape().Dimensions[0], 1, 1, r.Out))
	h = f.conv3(r.Name+".conv2", layers.SiLU(f.groupNorm(r.Name+".norm2", h, eps)), 1)
	if r.In != r.Out {
		x = f.linear(r.Name+".conv_shortcut", x, true)
	}
	return Add(x, h)
}

func (f fwd) attention(name string, x, ctx *Node) *Node {
	q := f.linear(name+".to_q", x, false)
	k := f.linear(name+".to_k", ctx, false)
	v := f.linear(name+".to_v", ctx, false)
	return f.linear(name+".to_out.0", layers.Attention(q, k, v, nil, f.c.AttentionHeadDim), true)
}

// geglu is diffusers' GEGLU feed-forward: proj → (hidden, gate) halves,
// hidden·GELU(gate), then ff.net.2. The halves are taken from the weight
// (as two matrices) rather than from the product, without Slice.
func (f fwd) feedForward(name string, x *Node) *Node {
	W, b := f.w(name+".net.0.proj.weight"), f.w(name+".net.0.proj.bias")
	d := W.Shape().Dimensions
	inner, C := d[0]/2, d[1]
	Wr, br := Reshape(W, 2, inner, C), Reshape(b, 2, inner)
	hidden := layers.Linear(x, layers.Take(Wr, 0), layers.Take(br, 0))
	gate := layers.Linear(x, layers.Take(Wr, 1), layers.Take(br, 1))
	return f.linear(name+".net.2", Mul(hidden, layers.GELU(gate)), true)
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
	temb = f.linear("time_embedding.linear_2", layers.SiLU(temb), true)
	tact := layers.SiLU(temb) // every resnet applies SiLU before time_emb_proj

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
			h = f.conv3(b.Sampler, layers.Upsample(h), 1)
		}
	}
	if len(skips) != 0 {
		panic(fmt.Sprintf("sd: %d skip connections left over: the plan is inconsistent", len(skips)))
	}
	h = layers.SiLU(f.groupNorm("conv_norm_out", h, c.NormEps))
	h = f.conv3("conv_out", h, 1)
	return TransposeAllAxes(h, 0, 3, 1, 2)
}

// Predict runs Forward once on be with weights w (diffusers' names):
// sample [B,InChannels,H,W], timestep [B], context [B,L,CrossAttentionDim]
// → ε [B,OutChannels,H,W]. It is the reference an exported UNet is
// checked against (parity tests, the full-size run).
func Predict(be backends.Backend, c Config, w model.Weights, sample []float32, B, H, W int, timestep, ctx []float32, L int, opts Options) (out []float32, err error) {
	specs := Specs(c)
	if err := Check(c, w); err != nil {
		return nil, err
	}
	args := make([]any, 0, len(specs)+3)
	for _, s := range specs {
		args = append(args, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	args = append(args,
		tensors.FromFlatDataAndDimensions(sample, B, c.InChannels, H, W),
		tensors.FromFlatDataAndDimensions(timestep, B),
		tensors.FromFlatDataAndDimensions(ctx, B, L, c.CrossAttentionDim))
	P := len(specs)
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("sd: forward: %v", r)
		}
	}()
	res := MustExecOnceN(be, func(x []*Node) []*Node {
		y := Forward(c, model.LookupFrom(specs, x[:P]), x[P], x[P+1], x[P+2], opts)
		model.Release(y.Graph())
		return []*Node{y}
	}, args...)
	out = tensors.MustCopyFlatData[float32](res[0])
	res[0].FinalizeAll()
	return out, nil
}
