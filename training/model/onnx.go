package model

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
)

// exporter adds weights to an ONNX graph under their names without the
// network prefix.
type exporter struct {
	g      *onnx.Graph
	w      Weights
	prefix string
}

func (e exporter) weight(name string) onnx.Value {
	t := e.w[e.prefix+name]
	if t == nil {
		// Check has run; this is a bug in the exporter's naming.
		panic(fmt.Sprintf("model: export: no weight %q", e.prefix+name))
	}
	return e.g.Initializer(name, t.Data, t.Shape...)
}

func (e exporter) linear(name string, x onnx.Value, bias bool) onnx.Value {
	b := onnx.Value{}
	if bias {
		b = e.weight(name + ".bias")
	}
	return e.g.Linear(x, e.weight(name+".weight"), b)
}

func (e exporter) layerNorm(name string, x onnx.Value) onnx.Value {
	return e.g.LayerNorm(x, e.weight(name+".weight"), e.weight(name+".bias"), 1e-5)
}

func (e exporter) attention(name string, x, ctx onnx.Value, width, heads int) onnx.Value {
	q := e.linear(name+".to_q", x, false)
	k := e.linear(name+".to_k", ctx, false)
	v := e.linear(name+".to_v", ctx, false)
	return e.linear(name+".to_out", e.g.Attention(q, k, v, heads, width, onnx.Value{}), true)
}

// ExportProjection is the projection MLP as an ONNX graph with ml/sdmodel's
// interface: embedding float32[batch,E] → tokens float32[batch,3,D].
func (c Config) ExportProjection(w Weights) (*onnx.Graph, error) {
	if err := Check(pick(w, ProjectionPrefix), c.ProjectionSpecs()); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("face0_projection")
	e := exporter{g, w, ProjectionPrefix}
	x := g.Input(sdmodel.InEmbedding, onnx.Float, "batch", c.EmbeddingDim)
	h := x
	for i := range ProjectionLayers {
		h = e.linear("proj."+strconv.Itoa(i), h, true)
		if i < ProjectionLayers-1 {
			h = g.Relu(h)
		}
	}
	g.Output(sdmodel.OutFaceTokens, g.Reshape(h, 0, int64(c.FaceTokens), int64(c.TextWidth)), "batch", c.FaceTokens, c.TextWidth)
	return g, g.Err()
}

// ExportDenoiser is the denoiser as an ONNX graph with SD's UNet interface:
// sample float32[batch,C,S,S], timestep float32[batch] (or [1], expanded
// to the batch as diffusers' export does), encoder_hidden_states
// float32[batch,sequence,D] → out_sample float32[batch,C,S,S]. The latent
// size S is fixed by the position embeddings.
func (c Config) ExportDenoiser(w Weights) (*onnx.Graph, error) {
	if err := Check(pick(w, DenoiserPrefix), c.DenoiserSpecs()); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("unet")
	e := exporter{g, w, DenoiserPrefix}
	C, P, S := c.LatentChannels, c.PatchSize, c.LatentSize
	G := S / P
	x := g.Input(sdmodel.InSample, onnx.Float, "batch", C, S, S)
	t := g.Input(sdmodel.InTimestep, onnx.Float, "batch")
	ctx := g.Input(sdmodel.InContext, onnx.Float, "batch", "sequence", c.TextWidth)

	batch := g.Slice(g.Shape(x), []int64{0}, []int64{1}, []int64{0})
	t = g.Node("Expand", []onnx.Value{t, batch})

	i64 := func(v ...int) []int64 {
		out := make([]int64, len(v))
		for i, d := range v {
			out[i] = int64(d)
		}
		return out
	}
	h := g.Reshape(x, i64(0, C, G, P, G, P)...)
	h = g.Transpose(h, 0, 2, 4, 3, 5, 1)
	h = g.Reshape(h, i64(0, G*G, P*P*C)...)
	patches := h
	h = e.linear("pos_embed.proj", h, true)
	h = g.Add(h, e.weight("pos_embed.pos_embedding"))

	freqs := c.timeFreqs()
	arg := g.Mul(g.Unsqueeze(t, 1), g.Const(freqs, 1, len(freqs)))
	temb := g.Concat(1, g.Cos(arg), g.Sin(arg))
	temb = e.linear("time_embedding.linear_1", temb, true)
	temb = e.linear("time_embedding.linear_2", g.SiLU(temb), true)
	tact := g.SiLU(temb)

	for i := range c.Blocks {
		b := "transformer_blocks." + strconv.Itoa(i)
		g.Push(b)
		h = g.Add(h, g.Unsqueeze(e.linear(b+".time_emb_proj", tact, true), 1))
		a := e.layerNorm(b+".norm1", h)
		h = g.Add(h, e.attention(b+".attn1", a, a, c.Width, c.Heads))
		h = g.Add(h, e.attention(b+".attn2", e.layerNorm(b+".norm2", h), ctx, c.Width, c.Heads))
		f := g.Gelu(e.linear(b+".ff.proj", e.layerNorm(b+".norm3", h), true))
		h = g.Add(h, e.linear(b+".ff.out", f, true))
		g.Pop()
	}
	h = e.linear("proj_out", e.layerNorm("norm_out", h), true)
	if c.PatchSkip {
		h = g.Add(h, e.linear("patch_skip", patches, false))
	}
	h = g.Reshape(h, i64(0, G, G, P, P, C)...)
	h = g.Transpose(h, 0, 5, 1, 3, 2, 4)
	h = g.Reshape(h, i64(0, C, S, S)...)
	if c.OutputKind() == OutputVSkip {
		// ε̂ = √ᾱ_t·v + √(1−ᾱ_t)·x_t, ᾱ_t as alphaBarNode computes it.
		table := alphasCumprod()
		n := float32(len(table) - 1)
		tc := g.Node("Min", []onnx.Value{g.Node("Max", []onnx.Value{t, g.Scalar(0)}), g.Scalar(n)})
		lo := g.Node("Floor", []onnx.Value{tc})
		hi := g.Node("Min", []onnx.Value{g.Add(lo, g.Scalar(1)), g.Scalar(n)})
		frac := g.Sub(tc, lo)
		tab := g.Const(table, len(table))
		a0 := g.Gather(tab, g.Cast(lo, onnx.Int64), 0)
		a1 := g.Gather(tab, g.Cast(hi, onnx.Int64), 0)
		a := g.Add(a0, g.Mul(frac, g.Sub(a1, a0)))
		a = g.Reshape(a, -1, 1, 1, 1)
		h = g.Add(g.Mul(g.Sqrt(a), h), g.Mul(g.Sqrt(g.Sub(g.Scalar(1), a)), x))
	}
	g.Output(sdmodel.OutNoise, h, "batch", C, S, S)
	return g, g.Err()
}

// pick is the subset of w under prefix.
func pick(w Weights, prefix string) Weights {
	out := Weights{}
	for k, v := range w {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// WriteONNX exports both networks into an SD-layout model folder:
// unet/model.onnx and face0/projection.onnx (ml/sdmodel's file names). The
// text encoder, VAE decoder, tokenizer, scheduler and face0.json are not
// this package's; ml/sdmodel writes and checks those.
func (c Config) WriteONNX(dir string, w Weights) error {
	if err := Check(w, c.Specs()); err != nil {
		return err
	}
	for _, f := range []struct {
		file  string
		build func(Weights) (*onnx.Graph, error)
	}{
		{sdmodel.UNetFile, c.ExportDenoiser},
		{sdmodel.ProjectionFile, c.ExportProjection},
	} {
		g, err := f.build(w)
		if err != nil {
			return fmt.Errorf("model: export %s: %w", f.file, err)
		}
		p := filepath.Join(dir, f.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := g.Save(p); err != nil {
			return fmt.Errorf("model: export %s: %w", f.file, err)
		}
	}
	return nil
}
