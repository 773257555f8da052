package model

// ForwardFLOPs counts the multiply-adds (×2) of one sample's forward pass
// through the denoiser and the projection: matrix products and attention
// only (norms, activations and the elementwise rest add a few per cent).
// With T = Tokens(), W = Width, L = ContextLength, D = TextWidth,
// R = MLPRatio, F = TimeFreqDim, Td = TimeDim, Q = PatchDim(),
// E = EmbeddingDim, H = ProjHidden, N = Blocks:
//
//	denoiser   = 2·T·Q·W                       patch embedding
//	           + 2·(F·Td + Td² + N·Td·W)       timestep MLP and per-block projections
//	           + N·[ 8·T·W² + 4·T²·W           self-attention (q, k, v, out; scores, mix)
//	               + 4·T·W² + 4·L·D·W + 4·T·L·W  cross-attention (q, out; k, v of the context; scores, mix)
//	               + 4·R·T·W² ]                feed-forward
//	           + 2·T·W·Q                       output projection
//	projection = 2·(E·H + 2·H² + 3·H·D)
//
// A training step costs about 3× the forward pass per sample (backward is
// two products per forward product), times BatchSize·GradAccum; with the
// denoiser frozen (adapter-only) about 2×, since its weight gradients are
// skipped but the gradient still flows back through it to the face tokens.
func (c Config) ForwardFLOPs() int64 {
	T, W, L, D := int64(c.Tokens()), int64(c.Width), int64(c.ContextLength), int64(c.TextWidth)
	R, F, Td, Q := int64(c.MLPRatio), int64(c.TimeFreqDim), int64(c.TimeDim), int64(c.PatchDim())
	E, H, N := int64(c.EmbeddingDim), int64(c.ProjHidden), int64(c.Blocks)
	den := 2*T*Q*W + 2*(F*Td+Td*Td+N*Td*W) +
		N*(8*T*W*W+4*T*T*W+4*T*W*W+4*L*D*W+4*T*L*W+4*R*T*W*W) +
		2*T*W*Q
	proj := 2 * (E*H + 2*H*H + 3*H*D)
	return den + proj
}

// StepFLOPs estimates one optimizer step: 3× the forward pass (2× when
// adapterOnly) for batch·accum samples.
func (c Config) StepFLOPs(batch, accum int, adapterOnly bool) int64 {
	k := int64(3)
	if adapterOnly {
		k = 2
	}
	return k * c.ForwardFLOPs() * int64(batch*accum)
}
