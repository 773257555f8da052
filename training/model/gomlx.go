package model

import (
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// Lookup returns the graph node holding a weight, by its full name.
type Lookup func(name string) *Node

// LookupFrom maps specs to nodes given in the same order.
func LookupFrom(specs []ParamSpec, nodes []*Node) Lookup {
	m := make(map[string]*Node, len(specs))
	for i, s := range specs {
		m[s.Name] = nodes[i]
	}
	return func(name string) *Node {
		n, ok := m[name]
		if !ok {
			panic(fmt.Sprintf("model: no weight %q in the graph's inputs", name))
		}
		return n
	}
}

// linear is x·W + b over the last axis of x, any rank ≥ 2.
func linear(w Lookup, name string, x *Node, bias bool) *Node {
	W := w(name + ".weight")
	dims := x.Shape().Dimensions
	in := dims[len(dims)-1]
	out := W.Shape().Dimensions[1]
	rows := 1
	for _, d := range dims[:len(dims)-1] {
		rows *= d
	}
	y := matmul(Reshape(x, rows, in), W)
	if bias {
		y = Add(y, InsertAxes(w(name+".bias"), 0))
	}
	outDims := append(append([]int(nil), dims[:len(dims)-1]...), out)
	return Reshape(y, outDims...)
}

// layerNorm normalises the last axis (ε = 1e-5, biased variance, as torch
// and ONNX LayerNormalization).
func layerNorm(w Lookup, name string, x *Node) *Node {
	last := x.Rank() - 1
	mean := ReduceAndKeep(x, ReduceMean, last)
	d := Sub(x, mean)
	variance := ReduceAndKeep(Square(d), ReduceMean, last)
	n := Div(d, Sqrt(AddScalar(variance, 1e-5))) // Rsqrt has no gradient in GoMLX v0.26
	scale := ExpandLeftToRank(w(name+".weight"), x.Rank())
	shift := ExpandLeftToRank(w(name+".bias"), x.Rank())
	return Add(Mul(n, scale), shift)
}

// gelu is the exact GELU, x·Φ(x).
func gelu(x *Node) *Node {
	return Mul(x, MulScalar(OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))), 0.5))
}

func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// attention projects queries from x [B,L,W] and keys/values from ctx
// [B,S,Dc], attends with heads heads and projects back: SD's attention
// (no q/k/v bias; to_out with bias).
func attention(w Lookup, name string, x, ctx *Node, heads int) *Node {
	q := linear(w, name+".to_q", x, false)
	k := linear(w, name+".to_k", ctx, false)
	v := linear(w, name+".to_v", ctx, false)
	B, L, W := q.Shape().Dimensions[0], q.Shape().Dimensions[1], q.Shape().Dimensions[2]
	S := k.Shape().Dimensions[1]
	dh := W / heads
	qh := TransposeAllAxes(Reshape(q, B, L, heads, dh), 0, 2, 1, 3) // [B,h,L,dh]
	kh := TransposeAllAxes(Reshape(k, B, S, heads, dh), 0, 2, 3, 1) // [B,h,dh,S]
	vh := TransposeAllAxes(Reshape(v, B, S, heads, dh), 0, 2, 1, 3) // [B,h,S,dh]
	qh = MulScalar(qh, 1/math.Sqrt(float64(dh)))
	s := Reshape(Dot3(Reshape(qh, B*heads, L, dh), Reshape(kh, B*heads, dh, S)), B, heads, L, S)
	p := Softmax(s, -1)
	o := Reshape(Dot3(Reshape(p, B*heads, L, S), Reshape(vh, B*heads, S, dh)), B, heads, L, dh)
	o = Reshape(TransposeAllAxes(o, 0, 2, 1, 3), B, L, W)
	return linear(w, name+".to_out", o, true)
}

// Dot3 is the batched matrix product of [N,a,b] and [N,b,c].
func Dot3(a, b *Node) *Node {
	n := DotGeneral(a, []int{2}, []int{0}, b, []int{1}, []int{0})
	markFast(n, true)
	return n
}

// matmul is the matrix product of [a,b] and [b,c].
func matmul(a, b *Node) *Node {
	n := DotGeneral(a, []int{1}, nil, b, []int{0}, nil)
	markFast(n, false)
	return n
}

// GoMLX v0.26.0 differentiates Dot and DotGeneral by broadcasting both
// operands to the full [a,b,c] product, multiplying and reducing: O(a·b·c)
// memory and, on the pure-Go backend, 97% of a training step spent in
// broadcast loops. The products this package builds (matmul, Dot3) are
// marked, and their gradients are two more matrix products instead, through
// GoMLX's documented VJPRegistration hook; any other DotGeneral keeps
// GoMLX's own gradient.
var (
	fastMu            sync.Mutex
	fastDots          = map[*Node]bool{} // node → has one leading batch axis
	origDotGeneralVJP = VJPRegistration[NodeTypeDotGeneral]
)

func init() {
	VJPRegistration[NodeTypeDotGeneral] = func(node *Node, vjps []*Node, outShape shapes.Shape) []*Node {
		fastMu.Lock()
		batched, ok := fastDots[node]
		fastMu.Unlock()
		if !ok || !outShape.IsScalar() {
			return origDotGeneralVJP(node, vjps, outShape)
		}
		a, b, v := node.Inputs()[0], node.Inputs()[1], vjps[0]
		if batched { // C[n,i,k] = Σ_j A[n,i,j]·B[n,j,k]
			return []*Node{
				DotGeneral(v, []int{2}, []int{0}, b, []int{2}, []int{0}), // dA[n,i,j] = Σ_k dC[n,i,k]·B[n,j,k]
				DotGeneral(a, []int{1}, []int{0}, v, []int{1}, []int{0}), // dB[n,j,k] = Σ_i A[n,i,j]·dC[n,i,k]
			}
		}
		return []*Node{
			DotGeneral(v, []int{1}, nil, b, []int{1}, nil), // dA = dC·Bᵀ
			DotGeneral(a, []int{0}, nil, v, []int{0}, nil), // dB = Aᵀ·dC
		}
	}
}

func markFast(n *Node, batched bool) {
	fastMu.Lock()
	fastDots[n] = batched
	fastMu.Unlock()
}

// Release forgets the marks on g's nodes; call it when g's gradients are
// built (the graph functions of package training do).
func Release(g *Graph) {
	fastMu.Lock()
	for n := range fastDots {
		if n.Graph() == g {
			delete(fastDots, n)
		}
	}
	fastMu.Unlock()
}

// Projection maps face embeddings [B,E] to face tokens [B,FaceTokens,D]:
// the paper's 4-layer MLP with ReLU after the hidden layers.
func (c Config) Projection(w Lookup, emb *Node) *Node {
	h := emb
	for i := range ProjectionLayers {
		h = linear(w, ProjectionPrefix+"proj."+strconv.Itoa(i), h, true)
		if i < ProjectionLayers-1 {
			h = MaxScalar(h, 0)
		}
	}
	return Reshape(h, emb.Shape().Dimensions[0], c.FaceTokens, c.TextWidth)
}

// FaceContext puts face tokens [B,3,D] into context [B,77,D] at positions
// FaceTokenStart.. (the last three), scaled per sample by keep [B] (1: use
// the face, 0: zeros there, the paper's dropped face). Built from
// Concatenate and a mask rather than slicing, whose gradient needs Pad.
func (c Config) FaceContext(ctx, faceTokens, keep *Node) *Node {
	g := ctx.Graph()
	B, L, D := ctx.Shape().Dimensions[0], c.ContextLength, c.TextWidth
	start := c.FaceTokenStart()
	rowMask := make([]float32, L)
	for i := range rowMask {
		if i < start || i >= start+c.FaceTokens {
			rowMask[i] = 1
		}
	}
	text := Mul(ctx, Reshape(Const(g, rowMask), 1, L, 1))
	face := Mul(faceTokens, Reshape(keep, B, 1, 1))
	parts := []*Node{}
	if start > 0 {
		parts = append(parts, Zeros(g, shapes.Make(dtypes.Float32, B, start, D)))
	}
	parts = append(parts, face)
	if after := L - start - c.FaceTokens; after > 0 {
		parts = append(parts, Zeros(g, shapes.Make(dtypes.Float32, B, after, D)))
	}
	return Add(text, Concatenate(parts, 1))
}

// timeFreqs are the sinusoid frequencies exp(-ln(10⁴)·i/half), i < half.
func (c Config) timeFreqs() []float32 {
	half := c.TimeFreqDim / 2
	f := make([]float32, half)
	for i := range f {
		f[i] = float32(math.Exp(-math.Log(10000) * float64(i) / float64(half)))
	}
	return f
}

// Denoiser predicts ε from sample [B,C,H,W], timestep [B] (float) and
// context [B,L,D], returning [B,C,H,W]:
//
//	tokens = patchify(sample)·pos_embed.proj + pos_embed.pos_embedding
//	temb   = linear_2(SiLU(linear_1([cos(t·f), sin(t·f)])))        (SD's flip_sin_to_cos)
//	per block: h += time_emb_proj(SiLU(temb))
//	           h += attn1(norm1(h))             self-attention
//	           h += attn2(norm2(h), context)    cross-attention
//	           h += ff.out(GELU(ff.proj(norm3(h))))
//	out = unpatchify(proj_out(norm_out(h)) [+ patch_skip(patches)])
func (c Config) Denoiser(w Lookup, sample, timestep, ctx *Node) *Node {
	g := sample.Graph()
	p := DenoiserPrefix
	B := sample.Shape().Dimensions[0]
	C, P, S := c.LatentChannels, c.PatchSize, c.LatentSize
	G := S / P
	// Patchify: [B,C,G,P,G,P] → [B,G,G,P,P,C] → [B,T,P·P·C].
	x := Reshape(sample, B, C, G, P, G, P)
	x = TransposeAllAxes(x, 0, 2, 4, 3, 5, 1)
	x = Reshape(x, B, G*G, P*P*C)
	patches := x
	h := linear(w, p+"pos_embed.proj", x, true)
	h = Add(h, InsertAxes(w(p+"pos_embed.pos_embedding"), 0))

	arg := Mul(Reshape(timestep, B, 1), Reshape(Const(g, c.timeFreqs()), 1, c.TimeFreqDim/2))
	temb := Concatenate([]*Node{Cos(arg), Sin(arg)}, 1)
	temb = linear(w, p+"time_embedding.linear_1", temb, true)
	temb = linear(w, p+"time_embedding.linear_2", silu(temb), true)
	tact := silu(temb)

	for i := range c.Blocks {
		b := p + "transformer_blocks." + strconv.Itoa(i)
		h = Add(h, InsertAxes(linear(w, b+".time_emb_proj", tact, true), 1))
		a := layerNorm(w, b+".norm1", h)
		h = Add(h, attention(w, b+".attn1", a, a, c.Heads))
		h = Add(h, attention(w, b+".attn2", layerNorm(w, b+".norm2", h), ctx, c.Heads))
		f := gelu(linear(w, b+".ff.proj", layerNorm(w, b+".norm3", h), true))
		h = Add(h, linear(w, b+".ff.out", f, true))
	}
	h = linear(w, p+"proj_out", layerNorm(w, p+"norm_out", h), true) // [B,T,P·P·C]
	if c.PatchSkip {
		h = Add(h, linear(w, p+"patch_skip", patches, false))
	}
	// Unpatchify: [B,G,G,P,P,C] → [B,C,G,P,G,P] → [B,C,S,S].
	h = Reshape(h, B, G, G, P, P, C)
	h = TransposeAllAxes(h, 0, 5, 1, 3, 2, 4)
	h = Reshape(h, B, C, S, S)
	if c.OutputKind() == OutputVSkip {
		// ε̂ = √ᾱ_t·v + √(1−ᾱ_t)·x_t.
		a := Reshape(alphaBarNode(Reshape(timestep, B)), B, 1, 1, 1)
		h = Add(Mul(Sqrt(a), h), Mul(Sqrt(OneMinus(a)), sample))
	}
	return h
}

// alphaBarNode is AlphaBar in the graph: t [B] clamped to [0, N−1], the
// table (a constant) gathered at floor(t) and floor(t)+1 and interpolated.
func alphaBarNode(t *Node) *Node {
	g := t.Graph()
	table := alphasCumprod()
	n := float64(len(table) - 1)
	B := t.Shape().Dimensions[0]
	tc := ClipScalar(t, 0, n)
	lo := Floor(tc)
	hi := MinScalar(AddScalar(lo, 1), n)
	frac := Sub(tc, lo)
	tab := Const(g, table)
	at := func(i *Node) *Node {
		return Gather(tab, Reshape(ConvertDType(i, dtypes.Int32), B, 1))
	}
	a0, a1 := at(lo), at(hi)
	return Add(a0, Mul(frac, Sub(a1, a0)))
}
