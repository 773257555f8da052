package sd

import (
	"path/filepath"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// exporter writes the UNet into an ONNX graph, NCHW as torch runs it.
type exporter struct {
	layers.Exporter
	c Config
}

func (e exporter) groupNorm(name string, x onnx.Value, eps float64) onnx.Value {
	return e.GroupNorm(name, x, e.c.NormNumGroups, float32(eps))
}

func (e exporter) layerNorm(name string, x onnx.Value) onnx.Value {
	return e.LayerNorm(name, x, layerNormEps)
}

func (e exporter) resnet(r resnet, x, tact onnx.Value) onnx.Value {
	g := e.G
	g.Push(r.Name)
	defer g.Pop()
	h := e.Conv(r.Name+".conv1", g.SiLU(e.groupNorm(r.Name+".norm1", x, e.c.NormEps)), 1, 1)
	h = g.Add(h, g.Unsqueeze(e.Linear(r.Name+".time_emb_proj", tact, true), 2, 3))
	h = e.Conv(r.Name+".conv2", g.SiLU(e.groupNorm(r.Name+".norm2", h, e.c.NormEps)), 1, 1)
	if r.In != r.Out {
		x = e.Conv(r.Name+".conv_shortcut", x, 1, 0)
	}
	return g.Add(x, h)
}

func (e exporter) attention(name string, x, ctx onnx.Value, C int) onnx.Value {
	q := e.Linear(name+".to_q", x, false)
	k := e.Linear(name+".to_k", ctx, false)
	v := e.Linear(name+".to_v", ctx, false)
	return e.Linear(name+".to_out.0", e.G.Attention(q, k, v, e.c.AttentionHeadDim, C, onnx.Value{}), true)
}

func (e exporter) transformer(t transformer, x, ctx onnx.Value) onnx.Value {
	g := e.G
	g.Push(t.Name)
	defer g.Pop()
	C := int64(t.C)
	h := e.groupNorm(t.Name+".norm", x, transformerNormEps)
	h = e.Conv(t.Name+".proj_in", h, 1, 0)
	h = g.Transpose(g.Reshape(h, 0, C, -1), 0, 2, 1) // [B,HW,C]
	b := t.Name + ".transformer_blocks.0"
	a := e.layerNorm(b+".norm1", h)
	h = g.Add(h, e.attention(b+".attn1", a, a, t.C))
	h = g.Add(h, e.attention(b+".attn2", e.layerNorm(b+".norm2", h), ctx, t.C))
	p := e.Linear(b+".ff.net.0.proj", e.layerNorm(b+".norm3", h), true)
	hidden := g.Slice(p, []int64{0}, []int64{4 * C}, []int64{-1})
	gate := g.Slice(p, []int64{4 * C}, []int64{8 * C}, []int64{-1})
	h = g.Add(h, e.Linear(b+".ff.net.2", g.Mul(hidden, g.Gelu(gate)), true))
	h = g.ReshapeV(g.Transpose(h, 0, 2, 1), g.Shape(x))
	return g.Add(e.Conv(t.Name+".proj_out", h, 1, 0), x)
}

// Export builds the UNet as an ONNX graph with SD's interface (ml/sdmodel's
// names): sample float32[batch,C,height,width], timestep float32[batch]
// (or [1], expanded to the batch as diffusers' export does),
// encoder_hidden_states float32[batch,sequence,D] → out_sample
// float32[batch,C,height,width]. Height and width are dynamic (multiples of
// c.Downscale()).
func Export(c Config, w model.Weights) (*onnx.Graph, error) {
	return ExportWith(c, w, ExportOptions{})
}

// ExportOptions choose how ExportWith writes the UNet.
type ExportOptions struct {
	// Half stores the weights in float16 and computes in float16 (the
	// interface stays float32; norms and the timestep features run in
	// float32): the usual way SD runs on GPUs, at half the memory and
	// file size. Its outputs match float32's to fp16 rounding.
	Half bool
	// Consume empties w as the weights go into the graph, so that a
	// full-size UNet (3.4 GB in float32) is not held twice.
	Consume bool
}

// PrecisionMeta is the metadata key ExportWith records the weights'
// precision under ("float32" or "float16").
const PrecisionMeta = "face0.precision"

// ExportWith is Export with options.
func ExportWith(c Config, w model.Weights, o ExportOptions) (*onnx.Graph, error) {
	if err := Check(c, w); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("unet")
	e := exporter{layers.Exporter{G: g, W: w, Pkg: "sd", Half: o.Half, Consume: o.Consume}, c}
	x := g.Input(sdmodel.InSample, onnx.Float, "batch", c.InChannels, "height", "width")
	t := g.Input(sdmodel.InTimestep, onnx.Float, "batch")
	ctx := g.Input(sdmodel.InContext, onnx.Float, "batch", "sequence", c.CrossAttentionDim)
	g.SetMeta(PrecisionMeta, "float32")
	if o.Half {
		g.SetMeta(PrecisionMeta, "float16")
		ctx = g.Cast(ctx, onnx.Float16) // once, not in each of the 16 cross-attentions
	}

	batch := g.Slice(g.Shape(x), []int64{0}, []int64{1}, []int64{0})
	t = g.Node("Expand", []onnx.Value{t, batch})
	freqs := c.timeFreqs()
	arg := g.Mul(g.Unsqueeze(t, 1), g.Const(freqs, 1, len(freqs)))
	temb := g.Concat(1, g.Cos(arg), g.Sin(arg))
	temb = e.Linear("time_embedding.linear_1", temb, true)
	temb = e.Linear("time_embedding.linear_2", g.SiLU(temb), true)
	tact := g.SiLU(temb)

	h := e.Conv("conv_in", x, 1, 1)
	skips := []onnx.Value{h}
	p := c.plan()
	for _, b := range p.Down {
		for j, r := range b.Resnets {
			h = e.resnet(r, h, tact)
			if j < len(b.Attns) {
				h = e.transformer(b.Attns[j], h, ctx)
			}
			skips = append(skips, h)
		}
		if b.Sampler != "" {
			h = e.Conv(b.Sampler, h, 2, 1)
			skips = append(skips, h)
		}
	}
	h = e.resnet(p.Mid.Resnets[0], h, tact)
	h = e.transformer(p.Mid.Attns[0], h, ctx)
	h = e.resnet(p.Mid.Resnets[1], h, tact)
	for _, b := range p.Up {
		for j, r := range b.Resnets {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = e.resnet(r, g.Concat(1, h, skip), tact)
			if j < len(b.Attns) {
				h = e.transformer(b.Attns[j], h, ctx)
			}
		}
		if b.Sampler != "" {
			h = e.Conv(b.Sampler, g.Upsample2x(h), 1, 1)
		}
	}
	h = e.Conv("conv_out", g.SiLU(e.groupNorm("conv_norm_out", h, c.NormEps)), 1, 1)
	if h.DType == onnx.Float16 {
		h = g.Cast(h, onnx.Float)
	}
	g.Output(sdmodel.OutNoise, h, "batch", c.OutChannels, "height", "width")
	return g, g.Err()
}

// WriteONNX exports the UNet to dir/unet/model.onnx (ml/sdmodel's file
// name); opts go to onnx's Save (large weights go to a side file).
func WriteONNX(dir string, c Config, w model.Weights, opts ...onnx.SaveOption) error {
	return WriteONNXWith(dir, c, w, ExportOptions{}, opts...)
}

// WriteONNXWith is WriteONNX with export options.
func WriteONNXWith(dir string, c Config, w model.Weights, o ExportOptions, opts ...onnx.SaveOption) error {
	g, err := ExportWith(c, w, o)
	if err != nil {
		return err
	}
	return layers.Save(g, filepath.Join(dir, sdmodel.UNetFile), "sd", opts...)
}

// ReadONNX reads the UNet's weights back from a model Export wrote
// (float16 ones converted), checked against c: the way a model folder
// becomes a base for training again.
func ReadONNX(path string, c Config) (model.Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// Every rank-2 weight of the UNet is a linear one, which Export
	// stores transposed.
	return layers.ReadONNX(path, Specs(c), func(s model.ParamSpec) bool { return len(s.Shape) == 2 }, "sd: the UNet's weights")
}
