package sd

// ForwardFLOPs counts 2× the multiply-adds of one forward pass for a batch
// of batch samples of h×w latents with ctxLen context tokens, derived by
// walking the same layout the forward pass builds: every convolution
// (2·Ho·Wo·k²·Cin·Cout), linear layer (2·rows·in·out) and attention product
// (2·2·heads·L·S·dh = 4·L·S·C). Norms, activations, softmax, residual adds
// and the upsampling are left out (a few per cent).
func (c Config) ForwardFLOPs(batch, h, w, ctxLen int) int64 {
	var n int64
	T, D := int64(c.TimeEmbedDim()), int64(c.CrossAttentionDim)
	conv := func(hw, k, in, out int) { n += 2 * int64(hw) * int64(k*k) * int64(in) * int64(out) }
	resnet := func(r resnet, hw int) {
		conv(hw, 3, r.In, r.Out)
		conv(hw, 3, r.Out, r.Out)
		n += 2 * T * int64(r.Out)
		if r.In != r.Out {
			conv(hw, 1, r.In, r.Out)
		}
	}
	attn := func(t transformer, hw int) {
		N, C, L := int64(hw), int64(t.C), int64(ctxLen)
		n += 2 * 2 * N * C * C     // proj_in, proj_out
		n += 4*2*N*C*C + 4*N*N*C   // attn1: q, k, v, out; scores and mix
		n += 2*2*N*C*C + 2*2*L*D*C // attn2: q, out; k, v from the context
		n += 4 * N * L * C         // attn2 scores and mix
		n += 2*N*C*8*C + 2*N*4*C*C // GEGLU proj (2·4C wide), ff.net.2
	}
	hw := h * w
	n += 2 * (int64(c.TimeFreqDim())*T + T*T)
	conv(hw, 3, c.InChannels, c.BlockOutChannels[0])
	p := c.plan()
	for _, b := range p.Down {
		for j, r := range b.Resnets {
			resnet(r, hw)
			if j < len(b.Attns) {
				attn(b.Attns[j], hw)
			}
		}
		if b.Sampler != "" {
			hw /= 4
			conv(hw, 3, b.SamplerC, b.SamplerC)
		}
	}
	resnet(p.Mid.Resnets[0], hw)
	attn(p.Mid.Attns[0], hw)
	resnet(p.Mid.Resnets[1], hw)
	for _, b := range p.Up {
		for j, r := range b.Resnets {
			resnet(r, hw)
			if j < len(b.Attns) {
				attn(b.Attns[j], hw)
			}
		}
		if b.Sampler != "" {
			hw *= 4
			conv(hw, 3, b.SamplerC, b.SamplerC)
		}
	}
	conv(hw, 3, c.BlockOutChannels[0], c.OutChannels)
	return n * int64(batch)
}

// StepFLOPs estimates one training step (forward and backward, with every
// weight trained): 3× the forward pass, as the backward pass computes two
// products (input and weight gradients) per forward product.
func (c Config) StepFLOPs(batch, h, w, ctxLen int) int64 {
	return 3 * c.ForwardFLOPs(batch, h, w, ctxLen)
}
