package vae

import (
	"strings"

	"github.com/face0/face0/training/model"
)

// Weights are stored in torch's layouts, as diffusers saves them: linear
// [out, in] (the attention's to_q/to_k/to_v/to_out.0), convolution
// [out, in, kh, kw] (quant_conv, post_quant_conv and conv_shortcut are 1×1),
// norms [C].

type specs []model.ParamSpec

func (l *specs) linear(name string, in, out int) {
	*l = append(*l,
		model.ParamSpec{Name: name + ".weight", Shape: []int{out, in}, Init: model.InitLinear, FanIn: in},
		model.ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: model.InitZeros})
}

func (l *specs) conv(name string, in, out, k int) {
	*l = append(*l,
		model.ParamSpec{Name: name + ".weight", Shape: []int{out, in, k, k}, Init: model.InitLinear, FanIn: in * k * k},
		model.ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: model.InitZeros})
}

func (l *specs) norm(name string, c int) {
	*l = append(*l,
		model.ParamSpec{Name: name + ".weight", Shape: []int{c}, Init: model.InitOnes},
		model.ParamSpec{Name: name + ".bias", Shape: []int{c}, Init: model.InitZeros})
}

func (l *specs) resnet(r resnet) {
	l.norm(r.Name+".norm1", r.In)
	l.conv(r.Name+".conv1", r.In, r.Out, 3)
	l.norm(r.Name+".norm2", r.Out)
	l.conv(r.Name+".conv2", r.Out, r.Out, 3)
	if r.In != r.Out {
		l.conv(r.Name+".conv_shortcut", r.In, r.Out, 1)
	}
}

func (l *specs) stages(st []stage) {
	for _, s := range st {
		for _, r := range s.Resnets {
			l.resnet(r)
		}
		if s.Sampler != "" {
			l.conv(s.Sampler, s.SamplerC, s.SamplerC, 3)
		}
	}
}

func (l *specs) mid(m mid) {
	a := m.attention()
	l.norm(a+".group_norm", m.C)
	for _, p := range []string{".to_q", ".to_k", ".to_v", ".to_out.0"} {
		l.linear(a+p, m.C, m.C)
	}
	for _, r := range m.resnets() {
		l.resnet(r)
	}
}

// Specs lists every weight of the VAE described by c, with diffusers'
// (new-style) names and torch's shapes: encoder.*, quant_conv,
// post_quant_conv, decoder.*. Initialisation: N(0, 1/fan_in) for linear and
// conv weights, zero biases, unit norm scales.
func Specs(c Config) []model.ParamSpec {
	var l specs
	C0, top, L := c.BlockOutChannels[0], c.top(), c.LatentChannels
	l.conv("encoder.conv_in", c.InChannels, C0, 3)
	l.stages(c.encoderStages())
	l.mid(mid{"encoder.mid_block", top})
	l.norm("encoder.conv_norm_out", top)
	l.conv("encoder.conv_out", top, 2*L, 3)
	l.conv("quant_conv", 2*L, 2*L, 1)
	l.conv("post_quant_conv", L, L, 1)
	l.conv("decoder.conv_in", L, top, 3)
	l.mid(mid{"decoder.mid_block", top})
	l.stages(c.decoderStages())
	l.norm("decoder.conv_norm_out", C0)
	l.conv("decoder.conv_out", C0, c.OutChannels, 3)
	return l
}

// EncoderSpecs and DecoderSpecs are the parts of Specs each half uses:
// encoder.* and quant_conv; post_quant_conv and decoder.*.
func EncoderSpecs(c Config) []model.ParamSpec { return part(c, true) }

// DecoderSpecs: see EncoderSpecs.
func DecoderSpecs(c Config) []model.ParamSpec { return part(c, false) }

func part(c Config, enc bool) []model.ParamSpec {
	var out []model.ParamSpec
	for _, s := range Specs(c) {
		if isEncoder(s.Name) == enc {
			out = append(out, s)
		}
	}
	return out
}

func isEncoder(name string) bool {
	return strings.HasPrefix(name, "encoder.") || strings.HasPrefix(name, "quant_conv.")
}
