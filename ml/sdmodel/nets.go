package sdmodel

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/face0/face0/ml/onnx"
)

// Init says how a weight starts out when it is generated at random.
type Init int

// Weight kinds.
const (
	InitLinear    Init = iota // N(0, 1/fan_in): keeps activations at unit scale
	InitBias                  // N(0, 0.02²): small but non-zero, so tests see it
	InitOnes                  // norm scales
	InitZeros                 // norm biases
	InitEmbedding             // N(0, 0.02²), CLIP's embedding init
)

// Params supplies each weight by name. The architecture code asks for every
// weight through it, so the same builders export random weights (Random) or
// trained ones (a checkpoint lookup) under the same names. fanIn is the
// number of inputs feeding each output, for InitLinear.
type Params func(name string, kind Init, fanIn int, shape ...int) []float32

// Random returns seeded random weights. Each weight's values depend only on
// the seed and its name, so adding a layer does not change the others.
func Random(seed uint64) Params {
	return func(name string, kind Init, fanIn int, shape ...int) []float32 {
		n := 1
		for _, d := range shape {
			n *= d
		}
		out := make([]float32, n)
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		std := 0.0
		switch kind {
		case InitOnes:
			for i := range out {
				out[i] = 1
			}
			return out
		case InitZeros:
			return out
		case InitLinear:
			std = 1 / math.Sqrt(float64(max(fanIn, 1)))
		case InitBias, InitEmbedding:
			std = 0.02
		}
		for i := range out {
			out[i] = float32(r.NormFloat64() * std)
		}
		return out
	}
}

// net wraps a graph with the parameter source and the naming scheme.
type net struct {
	g *onnx.Graph
	p Params
}

func (n net) w(name string, kind Init, fanIn int, shape ...int) onnx.Value {
	return n.g.Initializer(name, n.p(name, kind, fanIn, shape...), shape...)
}

// linear is y = x·W + b with W stored [in, out] (torch stores [out, in];
// export transposes once so inference needs no Transpose).
func (n net) linear(name string, x onnx.Value, in, out int, bias bool) onnx.Value {
	w := n.w(name+".weight", InitLinear, in, in, out)
	b := onnx.Value{}
	if bias {
		b = n.w(name+".bias", InitBias, in, out)
	}
	return n.g.Linear(x, w, b)
}

func (n net) conv(name string, x onnx.Value, in, out, k, stride int) onnx.Value {
	w := n.w(name+".weight", InitLinear, in*k*k, out, in, k, k)
	b := n.w(name+".bias", InitBias, in*k*k, out)
	return n.g.Conv2D(x, w, b, stride, k/2)
}

func (n net) groupNorm(name string, x onnx.Value, channels, groups int) onnx.Value {
	return n.g.GroupNorm(x, groups, n.w(name+".weight", InitOnes, 0, channels), n.w(name+".bias", InitZeros, 0, channels), 1e-5)
}

func (n net) layerNorm(name string, x onnx.Value, width int) onnx.Value {
	return n.g.LayerNorm(x, n.w(name+".weight", InitOnes, 0, width), n.w(name+".bias", InitZeros, 0, width), 1e-5)
}

// attention projects q from x and k, v from ctx (x itself for
// self-attention), attends, and projects back. CLIP uses biases on q/k/v,
// the UNet does not.
func (n net) attention(name string, x, ctx onnx.Value, width, ctxWidth, heads int, bias bool, mask onnx.Value) onnx.Value {
	q := n.linear(name+".to_q", x, width, width, bias)
	k := n.linear(name+".to_k", ctx, ctxWidth, width, bias)
	v := n.linear(name+".to_v", ctx, ctxWidth, width, bias)
	a := n.g.Attention(q, k, v, heads, width, mask)
	return n.linear(name+".to_out", a, width, width, true)
}

// ---- Text encoder ----

// buildTextEncoder is a CLIP-style text transformer: token + position
// embeddings, pre-norm layers of causal self-attention and a quick-GELU MLP,
// a final LayerNorm. pooler_output is the final state at the end token,
// found as CLIP does: the position of the largest id.
//
// The sequence axis is dynamic as in the diffusers export: position
// embeddings and the causal mask are sliced to the input's length.
func buildTextEncoder(cfg Config, vocab int, p Params) *onnx.Graph {
	g := onnx.NewGraph("text_encoder")
	n := net{g, p}
	D := cfg.TextWidth
	ids := g.Input(InInputIDs, onnx.Int32, "batch", "sequence")

	seqLen := g.Slice(g.Shape(ids), []int64{1}, []int64{2}, []int64{0}) // [1] int64
	tok := g.Gather(n.w("embeddings.token_embedding.weight", InitEmbedding, 0, vocab, D), ids, 0)
	posTable := n.w("embeddings.position_embedding.weight", InitEmbedding, 0, cfg.ContextLength, D)
	pos := g.SliceV(posTable, g.Ints(0), seqLen, g.Ints(0))
	h := g.Add(tok, pos)

	L := cfg.ContextLength
	maskData := make([]float32, L*L)
	for i := 0; i < L; i++ {
		for j := i + 1; j < L; j++ {
			maskData[i*L+j] = -1e9 // finite: -Inf turns into NaN in some fp16 and GPU kernels
		}
	}
	mask := g.Initializer("causal_mask", maskData, L, L)
	mask = g.SliceV(mask, g.Ints(0, 0), g.Concat(0, seqLen, seqLen), g.Ints(0, 1))

	for l := 0; l < cfg.TextLayers; l++ {
		pre := "encoder.layers." + strconv.Itoa(l)
		g.Push(pre)
		// Self-attention: queries, keys and values all come from the same
		// normalised h.
		x := n.layerNorm(pre+".layer_norm1", h, D)
		h = g.Add(h, n.attention(pre+".self_attn", x, x, D, D, cfg.TextHeads, true, mask))
		x = n.layerNorm(pre+".layer_norm2", h, D)
		x = g.QuickGelu(n.linear(pre+".mlp.fc1", x, D, 4*D, true))
		h = g.Add(h, n.linear(pre+".mlp.fc2", x, 4*D, D, true))
		g.Pop()
	}
	h = n.layerNorm("final_layer_norm", h, D)
	g.Output(OutLastHidden, h, "batch", "sequence", D)

	// pooler_output: one-hot of argmax(ids) over the sequence, times h, summed.
	eot := g.ArgMax(ids, -1, true) // [batch,1] int64
	positions := make([]int64, L)
	for i := range positions {
		positions[i] = int64(i)
	}
	ar := g.SliceV(g.InitializerInt64("positions", positions, L), g.Ints(0), seqLen, g.Ints(0))
	onehot := g.Unsqueeze(g.Cast(g.Equal(ar, eot), onnx.Float), 2) // [batch,sequence,1]
	g.Output(OutPooled, g.ReduceSum(g.Mul(h, onehot), false, 1), "batch", D)
	return g
}

// ---- UNet ----

// buildUNet is a two-level UNet with SD's parts at tiny width:
//
//	timestep → sinusoidal embedding (cos, sin; SD's flip_sin_to_cos) → Linear, SiLU, Linear = temb
//	conv_in 4→C → res1 (C, temb) = skip
//	down: conv stride 2, C→2C → res2 (2C, temb) → transformer (self-attn, cross-attn on the context, GELU MLP)
//	up: nearest ×2, conv 2C→C → concat skip (2C) → res3 (2C→C, temb)
//	GroupNorm, SiLU, conv_out C→4
//
// timestep may be [batch] or [1]: like diffusers' export it is expanded to
// the sample's batch. Height and width must be even.
func buildUNet(cfg Config, p Params) *onnx.Graph {
	g := onnx.NewGraph("unet")
	n := net{g, p}
	C, G, D := cfg.UNetChannels, cfg.UNetGroups, cfg.TextWidth
	x := g.Input(InSample, onnx.Float, "batch", 4, "height", "width")
	t := g.Input(InTimestep, onnx.Float, "batch")
	ctx := g.Input(InContext, onnx.Float, "batch", "sequence", D)

	batch := g.Slice(g.Shape(x), []int64{0}, []int64{1}, []int64{0})
	t = g.Node("Expand", []onnx.Value{t, batch})

	half := C / 2
	freqs := make([]float32, half)
	for i := range freqs {
		freqs[i] = float32(math.Exp(-math.Log(10000) * float64(i) / float64(half)))
	}
	arg := g.Mul(g.Unsqueeze(t, 1), g.Const(freqs, 1, half)) // [batch, half]
	temb := g.Concat(1, g.Cos(arg), g.Sin(arg))
	T := 4 * C
	temb = n.linear("time_embedding.linear_1", temb, C, T, true)
	temb = n.linear("time_embedding.linear_2", g.SiLU(temb), T, T, true)

	h := n.conv("conv_in", x, 4, C, 3, 1)
	skip := n.resBlock("down.res", h, temb, C, C, T, G)
	h = n.conv("down.downsample", skip, C, 2*C, 3, 2)
	h = n.resBlock("mid.res", h, temb, 2*C, 2*C, T, G)
	h = n.transformer("mid.attn", h, ctx, 2*C, D, cfg.UNetHeads, G)
	h = n.conv("up.upsample.conv", g.Upsample2x(h), 2*C, C, 3, 1)
	h = g.Concat(1, h, skip)
	h = n.resBlock("up.res", h, temb, 2*C, C, T, G)
	h = g.SiLU(n.groupNorm("conv_norm_out", h, C, G))
	h = n.conv("conv_out", h, C, 4, 3, 1)
	g.Output(OutNoise, h, "batch", 4, "height", "width")
	return g
}

// resBlock is diffusers' ResnetBlock2D: GroupNorm, SiLU, conv, plus the
// projected time embedding per channel, GroupNorm, SiLU, conv, and a 1x1
// conv shortcut when the width changes.
func (n net) resBlock(name string, x, temb onnx.Value, in, out, tdim, groups int) onnx.Value {
	g := n.g
	g.Push(name)
	defer g.Pop()
	h := n.conv(name+".conv1", g.SiLU(n.groupNorm(name+".norm1", x, in, groups)), in, out, 3, 1)
	tp := n.linear(name+".time_emb_proj", g.SiLU(temb), tdim, out, true)
	h = g.Add(h, g.Unsqueeze(tp, 2, 3))
	h = n.conv(name+".conv2", g.SiLU(n.groupNorm(name+".norm2", h, out, groups)), out, out, 3, 1)
	if in != out {
		x = n.conv(name+".conv_shortcut", x, in, out, 1, 1)
	}
	return g.Add(x, h)
}

// transformer is diffusers' Transformer2DModel with one
// BasicTransformerBlock: GroupNorm, 1x1 proj_in, then on [batch, h·w, C]
// tokens self-attention, cross-attention to the context and a GELU MLP, each
// pre-LayerNorm and residual, 1x1 proj_out and the outer residual.
func (n net) transformer(name string, x, ctx onnx.Value, C, ctxWidth, heads, groups int) onnx.Value {
	g := n.g
	g.Push(name)
	defer g.Pop()
	h := n.conv(name+".proj_in", n.groupNorm(name+".norm", x, C, groups), C, C, 1, 1)
	tokens := g.Transpose(g.Reshape(h, 0, 0, -1), 0, 2, 1) // [b, hw, C]
	b := name + ".transformer_blocks.0"
	a := n.layerNorm(b+".norm1", tokens, C)
	tokens = g.Add(tokens, n.attention(b+".attn1", a, a, C, C, heads, false, onnx.Value{}))
	tokens = g.Add(tokens, n.attention(b+".attn2", n.layerNorm(b+".norm2", tokens, C), ctx, C, ctxWidth, heads, false, onnx.Value{}))
	f := g.Gelu(n.linear(b+".ff.proj", n.layerNorm(b+".norm3", tokens, C), C, 4*C, true))
	tokens = g.Add(tokens, n.linear(b+".ff.out", f, 4*C, C, true))
	h = g.ReshapeV(g.Transpose(tokens, 0, 2, 1), g.Shape(x))
	return g.Add(x, n.conv(name+".proj_out", h, C, C, 1, 1))
}

// ---- VAE decoder ----

// buildVAEDecoder maps latents to images 8x larger: post_quant_conv (1x1, as
// in diffusers' vae_decoder export), conv_in, three (nearest ×2, conv, SiLU)
// stages, GroupNorm, SiLU, conv_out to RGB. Like the SD export it does not
// divide by the latent scale (0.18215): the caller does, before decoding.
func buildVAEDecoder(cfg Config, p Params) *onnx.Graph {
	g := onnx.NewGraph("vae_decoder")
	n := net{g, p}
	C := cfg.VAEChannels
	z := g.Input(InLatent, onnx.Float, "batch", 4, "height", "width")
	h := n.conv("post_quant_conv", z, 4, 4, 1, 1)
	h = g.SiLU(n.conv("decoder.conv_in", h, 4, C, 3, 1))
	for i := 0; i < 3; i++ {
		h = g.SiLU(n.conv("decoder.up_blocks."+strconv.Itoa(i)+".upsample.conv", g.Upsample2x(h), C, C, 3, 1))
	}
	h = g.SiLU(n.groupNorm("decoder.conv_norm_out", h, C, gcd(C, 8)))
	h = n.conv("decoder.conv_out", h, C, 3, 3, 1)
	g.Output(OutImage, h, "batch", 3, "height_x8", "width_x8")
	return g
}

// ---- Face projection ----

// buildProjection is the paper's projection: a 4-layer MLP with ReLU after
// the hidden layers, E → H → H → H → 3·D, reshaped to three context tokens.
func buildProjection(cfg Config, p Params) *onnx.Graph {
	g := onnx.NewGraph("face0_projection")
	n := net{g, p}
	E, H, D := cfg.EmbeddingDim, cfg.ProjHidden, cfg.TextWidth
	x := g.Input(InEmbedding, onnx.Float, "batch", E)
	h := g.Relu(n.linear("proj.0", x, E, H, true))
	h = g.Relu(n.linear("proj.1", h, H, H, true))
	h = g.Relu(n.linear("proj.2", h, H, H, true))
	h = n.linear("proj.3", h, H, 3*D, true)
	g.Output(OutFaceTokens, g.Reshape(h, 0, 3, int64(D)), "batch", 3, D)
	return g
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
