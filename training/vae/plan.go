package vae

import "strconv"

// The VAE's layout, derived from a Config once and walked by Specs, the
// GoMLX forward, the ONNX export and the FLOP count, so the four agree.

// resnet is diffusers' ResnetBlock2D without a timestep: GroupNorm, SiLU,
// 3×3 conv1, GroupNorm, SiLU, 3×3 conv2, + (1×1 conv_shortcut when In ≠ Out).
type resnet struct {
	Name    string
	In, Out int
}

// stage is a DownEncoderBlock2D (resnets, then downsamplers.0.conv: 3×3,
// stride 2, after zero padding (0,1,0,1)) or an UpDecoderBlock2D (resnets,
// then nearest 2× and upsamplers.0.conv: 3×3, padding 1).
type stage struct {
	Resnets  []resnet
	Sampler  string // full name of the sampler conv, or ""
	SamplerC int
}

// mid is UNetMidBlock2D: resnets.0, attentions.0 (one head over all C
// channels), resnets.1.
type mid struct {
	Name string
	C    int
}

func (m mid) resnets() [2]resnet {
	return [2]resnet{{m.Name + ".resnets.0", m.C, m.C}, {m.Name + ".resnets.1", m.C, m.C}}
}

func (m mid) attention() string { return m.Name + ".attentions.0" }

func (c Config) encoderStages() []stage {
	n := len(c.BlockOutChannels)
	out := c.BlockOutChannels[0]
	var st []stage
	for i := range n {
		in := out
		out = c.BlockOutChannels[i]
		name := "encoder.down_blocks." + strconv.Itoa(i)
		var s stage
		for j := range c.LayersPerBlock {
			rin := out
			if j == 0 {
				rin = in
			}
			s.Resnets = append(s.Resnets, resnet{name + ".resnets." + strconv.Itoa(j), rin, out})
		}
		if i < n-1 {
			s.Sampler, s.SamplerC = name+".downsamplers.0.conv", out
		}
		st = append(st, s)
	}
	return st
}

func (c Config) decoderStages() []stage {
	n := len(c.BlockOutChannels)
	out := c.BlockOutChannels[n-1]
	var st []stage
	for i := range n {
		prev := out
		out = c.BlockOutChannels[n-1-i]
		name := "decoder.up_blocks." + strconv.Itoa(i)
		var s stage
		for j := range c.LayersPerBlock + 1 {
			rin := out
			if j == 0 {
				rin = prev
			}
			s.Resnets = append(s.Resnets, resnet{name + ".resnets." + strconv.Itoa(j), rin, out})
		}
		if i < n-1 {
			s.Sampler, s.SamplerC = name+".upsamplers.0.conv", out
		}
		st = append(st, s)
	}
	return st
}

func (c Config) top() int { return c.BlockOutChannels[len(c.BlockOutChannels)-1] }
