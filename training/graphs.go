package training

import (
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom

	"github.com/face0/face0/training/model"
)

// batchInputs is the number of graph inputs a Batch becomes, in the order
// of Batch.tensors.
const batchInputs = 8

// loss is the Face0 objective on one micro-batch (paper, Sec. 2.1):
//
//	x_t = √ᾱ_t·x₀ + √(1-ᾱ_t)·ε
//	c   = text context with rows 74..76 := keep·MLP(f)
//	L   = mean ‖ε - ε_θ(x_t, t, c)‖²
//
// With weight "v" each example's term is divided by ᾱ_t (see
// Config.LossWeight). b holds the Batch's tensors in order: x₀, ε, t, √ᾱ,
// √(1-ᾱ), context, embedding, keep.
func lossGraph(cfg Config, w model.Lookup, b []*Node) *Node {
	m, weight := cfg.Model, cfg.LossWeight
	x0, noise, ts, sab, s1ab, ctx, emb, keep := b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
	B := x0.Shape().Dimensions[0]
	xt := Add(Mul(x0, Reshape(sab, B, 1, 1, 1)), Mul(noise, Reshape(s1ab, B, 1, 1, 1)))
	c := m.FaceContext(ctx, m.Projection(w, emb), keep)
	pred := cfg.denoise(w, xt, ts, c)
	sq := Square(Sub(pred, noise))
	if weight == LossWeightV {
		// ‖ε̂−ε‖²/ᾱ: per example, the mean over its values over ᾱ_t.
		per := ReduceMean(sq, 1, 2, 3)
		return ReduceAllMean(Div(per, Square(sab)))
	}
	return ReduceAllMean(sq)
}

// hyper are the per-step scalars of the update, computed on the host in
// float64: see Trainer.hyper.
const hyperInputs = 5

// adamW updates the trainable weights p with gradients g (AdamW, torch
// semantics, after optional global-norm clipping) and the EMA e. h holds
// the scalars: gradient scale (1/accumulation), lr/(1-β₁ᵗ),
// 1/√(1-β₂ᵗ), 1-lr·wd, EMA decay. It returns the gradient norm (after
// scaling, before clipping) and the new p, m, v, e (e empty without EMA).
func adamW(cfg Config, p, m, v, e, g, h []*Node) (norm *Node, np, nm, nv, ne []*Node) {
	gscale, stepSize, invSqrtBC2, decayWD, emaDecay := h[0], h[1], h[2], h[3], h[4]
	gs := make([]*Node, len(g))
	var sq *Node
	for i, gi := range g {
		gs[i] = Mul(gi, gscale)
		s := ReduceAllSum(Square(gs[i]))
		if sq == nil {
			sq = s
		} else {
			sq = Add(sq, s)
		}
	}
	norm = Sqrt(sq)
	if cfg.MaxGradNorm > 0 {
		// torch.nn.utils.clip_grad_norm_: coef = max/(norm+1e-6), clamped to 1.
		coef := MinScalar(Div(Scalar(norm.Graph(), norm.DType(), cfg.MaxGradNorm), AddScalar(norm, 1e-6)), 1)
		for i := range gs {
			gs[i] = Mul(gs[i], coef)
		}
	}
	// Scalars go on the right of Mul: the pure-Go backend has a fast path
	// for a scalar rhs only (a scalar lhs takes the slow broadcast loop).
	b1, b2 := cfg.Beta1, cfg.Beta2
	for i := range p {
		mi := Add(MulScalar(m[i], b1), MulScalar(gs[i], 1-b1))
		vi := Add(MulScalar(v[i], b2), MulScalar(Square(gs[i]), 1-b2))
		denom := AddScalar(Mul(Sqrt(vi), invSqrtBC2), cfg.Eps)
		pi := Sub(Mul(p[i], decayWD), Mul(Div(mi, denom), stepSize))
		np, nm, nv = append(np, pi), append(nm, mi), append(nv, vi)
		if len(e) > 0 {
			ne = append(ne, Add(Mul(e[i], emaDecay), Mul(pi, OneMinus(emaDecay))))
		}
	}
	return norm, np, nm, nv, ne
}
