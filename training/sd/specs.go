package sd

import (
	"github.com/face0/face0/training/model"
)

// Weights are stored in torch's layouts, as diffusers saves them: linear
// [out, in], convolution [out, in, kh, kw] (proj_in and proj_out are 1×1
// convolutions in SD 1.x), norms [C].

type specs []model.ParamSpec

func (l *specs) linear(name string, in, out int, bias bool) {
	*l = append(*l, model.ParamSpec{Name: name + ".weight", Shape: []int{out, in}, Init: model.InitLinear, FanIn: in})
	if bias {
		*l = append(*l, model.ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: model.InitZeros})
	}
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

func (l *specs) resnet(r resnet, temb int) {
	l.norm(r.Name+".norm1", r.In)
	l.conv(r.Name+".conv1", r.In, r.Out, 3)
	l.linear(r.Name+".time_emb_proj", temb, r.Out, true)
	l.norm(r.Name+".norm2", r.Out)
	l.conv(r.Name+".conv2", r.Out, r.Out, 3)
	if r.In != r.Out {
		l.conv(r.Name+".conv_shortcut", r.In, r.Out, 1)
	}
}

func (l *specs) transformer(t transformer, ctx int) {
	C := t.C
	l.norm(t.Name+".norm", C)
	l.conv(t.Name+".proj_in", C, C, 1)
	b := t.Name + ".transformer_blocks.0"
	l.norm(b+".norm1", C)
	l.linear(b+".attn1.to_q", C, C, false)
	l.linear(b+".attn1.to_k", C, C, false)
	l.linear(b+".attn1.to_v", C, C, false)
	l.linear(b+".attn1.to_out.0", C, C, true)
	l.norm(b+".norm2", C)
	l.linear(b+".attn2.to_q", C, C, false)
	l.linear(b+".attn2.to_k", ctx, C, false)
	l.linear(b+".attn2.to_v", ctx, C, false)
	l.linear(b+".attn2.to_out.0", C, C, true)
	l.norm(b+".norm3", C)
	l.linear(b+".ff.net.0.proj", C, 8*C, true) // GEGLU: hidden and gate, 4C each
	l.linear(b+".ff.net.2", 4*C, C, true)
	l.conv(t.Name+".proj_out", C, C, 1)
}

func (l *specs) block(b block, temb, ctx int) {
	for j, r := range b.Resnets {
		l.resnet(r, temb)
		if j < len(b.Attns) {
			l.transformer(b.Attns[j], ctx)
		}
	}
	if b.Sampler != "" {
		l.conv(b.Sampler, b.SamplerC, b.SamplerC, 3)
	}
}

// Specs lists every weight of the UNet described by c, with diffusers'
// names and torch's shapes, in the order of diffusers' state dict.
// Initialisation: N(0, 1/fan_in) for linear and conv weights, zero biases,
// unit norm scales.
func Specs(c Config) []model.ParamSpec {
	var l specs
	C0, T, D := c.BlockOutChannels[0], c.TimeEmbedDim(), c.CrossAttentionDim
	l.conv("conv_in", c.InChannels, C0, 3)
	l.linear("time_embedding.linear_1", c.TimeFreqDim(), T, true)
	l.linear("time_embedding.linear_2", T, T, true)
	p := c.plan()
	for _, b := range p.Down {
		l.block(b, T, D)
	}
	for _, b := range p.Up {
		l.block(b, T, D)
	}
	// mid: resnets.0, attentions.0, resnets.1
	l.block(block{Resnets: p.Mid.Resnets[:1], Attns: p.Mid.Attns}, T, D)
	l.resnet(p.Mid.Resnets[1], T)
	l.norm("conv_norm_out", C0)
	l.conv("conv_out", C0, c.OutChannels, 3)
	return l
}
