package vae

// FLOP counts: 2× the multiply-adds of every convolution, linear and
// attention product, walking the same layout as the forward passes. Norms,
// activations and the upsample are left out.

func conv2(hw, in, out, k int) int64 { return 2 * int64(hw) * int64(in) * int64(out) * int64(k*k) }

func resnetFLOPs(r resnet, hw int) int64 {
	f := conv2(hw, r.In, r.Out, 3) + conv2(hw, r.Out, r.Out, 3)
	if r.In != r.Out {
		f += conv2(hw, r.In, r.Out, 1)
	}
	return f
}

func midFLOPs(C, hw int) int64 {
	rs := mid{C: C}.resnets()
	// q, k, v, out projections; scores and the weighted sum.
	return resnetFLOPs(rs[0], hw) + resnetFLOPs(rs[1], hw) + 4*conv2(hw, C, C, 1) + 4*int64(hw)*int64(hw)*int64(C)
}

// EncoderFLOPs is the encoder's cost (through quant_conv) on a batch of
// H×W images.
func (c Config) EncoderFLOPs(batch, H, W int) int64 {
	hw := H * W
	f := conv2(hw, c.InChannels, c.BlockOutChannels[0], 3)
	for _, s := range c.encoderStages() {
		for _, r := range s.Resnets {
			f += resnetFLOPs(r, hw)
		}
		if s.Sampler != "" {
			hw /= 4
			f += conv2(hw, s.SamplerC, s.SamplerC, 3)
		}
	}
	L := c.LatentChannels
	f += midFLOPs(c.top(), hw) + conv2(hw, c.top(), 2*L, 3) + conv2(hw, 2*L, 2*L, 1)
	return int64(batch) * f
}

// DecoderFLOPs is the decoder's cost (from post_quant_conv) on a batch of
// h×w latents.
func (c Config) DecoderFLOPs(batch, h, w int) int64 {
	hw := h * w
	L := c.LatentChannels
	f := conv2(hw, L, L, 1) + conv2(hw, L, c.top(), 3) + midFLOPs(c.top(), hw)
	for _, s := range c.decoderStages() {
		for _, r := range s.Resnets {
			f += resnetFLOPs(r, hw)
		}
		if s.Sampler != "" {
			hw *= 4
			f += conv2(hw, s.SamplerC, s.SamplerC, 3)
		}
	}
	f += conv2(hw, c.BlockOutChannels[0], c.OutChannels, 3)
	return int64(batch) * f
}
