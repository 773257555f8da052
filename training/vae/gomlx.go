package vae

import (
	"fmt"
	"math"
	"math/rand/v2"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// ConvImpl selects how 3×3 convolutions are built (see layers.ConvImpl,
// shared with training/sd).
type ConvImpl = layers.ConvImpl

// The convolution builds: ConvIm2col runs on GoMLX's pure-Go backend,
// ConvNative is GoMLX's ConvGeneral for the XLA backends.
const (
	ConvIm2col = layers.ConvIm2col
	ConvNative = layers.ConvNative
)

// Options are choices that change how the graph is built, not what it
// computes (shared with the other networks: see layers.Options).
type Options = layers.Options

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

func (f fwd) linear(name string, x *Node) *Node {
	return layers.Linear(x, f.w(name+".weight"), f.w(name+".bias"))
}

// conv3 is a 3×3 convolution of x [B,H,W,C] with stride s and zero padding
// lo before and hi after each spatial axis (see layers.Conv3).
func (f fwd) conv3(name string, x *Node, s, lo, hi int) *Node {
	return layers.Conv3(f.opts.Conv, x, f.w(name+".weight"), f.w(name+".bias"), s, lo, hi)
}

// groupNorm is torch's GroupNorm (ε 1e-6) on channels-last x [B,H,W,C].
func (f fwd) groupNorm(name string, x *Node) *Node {
	return layers.GroupNorm(x, f.w(name+".weight"), f.w(name+".bias"), f.c.NormNumGroups, normEps)
}

func (f fwd) resnet(r resnet, x *Node) *Node {
	h := f.conv3(r.Name+".conv1", layers.SiLU(f.groupNorm(r.Name+".norm1", x)), 1, 1, 1)
	h = f.conv3(r.Name+".conv2", layers.SiLU(f.groupNorm(r.Name+".norm2", h)), 1, 1, 1)
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
	h = layers.SiLU(f.groupNorm("encoder.conv_norm_out", h))
	h = f.conv3("encoder.conv_out", h, 1, 1, 1) // [B,h,w,2L]: moments
	// quant_conv, its two output halves (mean, logvar) computed separately
	// from the two halves of its weight.
	L := c.LatentChannels
	Wq, bq := Reshape(w("quant_conv.weight"), 2, L, 2*L), Reshape(w("quant_conv.bias"), 2, L)
	mean = layers.Linear(h, layers.Take(Wq, 0), layers.Take(bq, 0))
	logvar = ClipScalar(layers.Linear(h, layers.Take(Wq, 1), layers.Take(bq, 1)), LogvarMin, LogvarMax)
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
			h = f.conv3(s.Sampler, layers.Upsample(h), 1, 1, 1)
		}
	}
	h = layers.SiLU(f.groupNorm("decoder.conv_norm_out", h))
	h = f.conv3("decoder.conv_out", h, 1, 1, 1)
	return TransposeAllAxes(h, 0, 3, 1, 2)
}
