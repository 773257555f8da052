package sd

import "strconv"

// The UNet's layout, derived from a Config once and walked by Specs, the
// GoMLX forward, the ONNX export and the FLOP count, so the four agree.

// resnet is a ResnetBlock2D: GroupNorm, SiLU, 3×3 conv, + timestep
// projection, GroupNorm, SiLU, 3×3 conv, + (1×1 conv_shortcut when In ≠ Out).
type resnet struct {
	Name    string
	In, Out int
}

// transformer is a Transformer2DModel with one BasicTransformerBlock at C
// channels.
type transformer struct {
	Name string
	C    int
}

// block is a down, mid or up block. Down blocks store a skip after each
// layer and after the downsampler; up blocks concatenate one before each
// resnet (the hidden state first, then the skip, as torch.cat([h, skip], 1)).
type block struct {
	Name         string
	Resnets      []resnet
	Attns        []transformer // nil, or one per resnet (mid: one after resnets[0])
	Sampler      string        // "downsamplers.0.conv" or "upsamplers.0.conv" with prefix, or ""
	SamplerC     int
	SkipChannels []int // up blocks: channels of the skip each resnet takes
}

type plan struct {
	Down []block
	Mid  block
	Up   []block
}

func (c Config) plan() plan {
	var p plan
	n := len(c.BlockOutChannels)
	L := c.LayersPerBlock
	out := c.BlockOutChannels[0]
	for i, typ := range c.DownBlockTypes {
		in := out
		out = c.BlockOutChannels[i]
		b := block{Name: "down_blocks." + strconv.Itoa(i)}
		for j := range L {
			rin := out
			if j == 0 {
				rin = in
			}
			b.Resnets = append(b.Resnets, resnet{b.Name + ".resnets." + strconv.Itoa(j), rin, out})
			if typ == CrossAttnDownBlock {
				b.Attns = append(b.Attns, transformer{b.Name + ".attentions." + strconv.Itoa(j), out})
			}
		}
		if i < n-1 {
			b.Sampler, b.SamplerC = b.Name+".downsamplers.0.conv", out
		}
		p.Down = append(p.Down, b)
	}
	top := c.BlockOutChannels[n-1]
	p.Mid = block{
		Name:    "mid_block",
		Resnets: []resnet{{"mid_block.resnets.0", top, top}, {"mid_block.resnets.1", top, top}},
		Attns:   []transformer{{"mid_block.attentions.0", top}},
	}
	rev := make([]int, n)
	for i := range n {
		rev[i] = c.BlockOutChannels[n-1-i]
	}
	prevOut := rev[0]
	for i, typ := range c.UpBlockTypes {
		outC := rev[i]
		inC := rev[min(i+1, n-1)]
		b := block{Name: "up_blocks." + strconv.Itoa(i)}
		for j := range L + 1 {
			skip := outC
			if j == L {
				skip = inC
			}
			rin := outC
			if j == 0 {
				rin = prevOut
			}
			b.Resnets = append(b.Resnets, resnet{b.Name + ".resnets." + strconv.Itoa(j), rin + skip, outC})
			b.SkipChannels = append(b.SkipChannels, skip)
			if typ == CrossAttnUpBlock {
				b.Attns = append(b.Attns, transformer{b.Name + ".attentions." + strconv.Itoa(j), outC})
			}
		}
		if i < n-1 {
			b.Sampler, b.SamplerC = b.Name+".upsamplers.0.conv", outC
		}
		p.Up = append(p.Up, b)
		prevOut = outC
	}
	return p
}
