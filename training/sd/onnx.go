package sd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/model"
)

// exporter writes the UNet into an ONNX graph, NCHW as torch runs it.
type exporter struct {
	c Config
	g *onnx.Graph
	w model.Weights
}

func (e exporter) init(name string) onnx.Value {
	t := e.w[name]
	if t == nil {
		panic(fmt.Sprintf("sd: export: no weight %q", name)) // Check has run: a naming bug here
	}
	return e.g.Initializer(name, t.Data, t.Shape...)
}

// linear is x·Wᵀ + b. The initializer keeps the weight's name but holds it
// transposed to [in, out], for MatMul (as torch.onnx's export does).
func (e exporter) linear(name string, x onnx.Value, bias bool) onnx.Value {
	t := e.w[name+".weight"]
	if t == nil {
		panic(fmt.Sprintf("sd: export: no weight %q", name+".weight"))
	}
	out, in := t.Shape[0], t.Shape[1]
	tr := make([]float32, len(t.Data))
	for o := range out {
		for i := range in {
			tr[i*out+o] = t.Data[o*in+i]
		}
	}
	W := e.g.Initializer(name+".weight", tr, in, out)
	b := onnx.Value{}
	if bias {
		b = e.init(name + ".bias")
	}
	return e.g.Linear(x, W, b)
}

func (e exporter) conv(name string, x onnx.Value, stride, pad int) onnx.Value {
	return e.g.Conv2D(x, e.init(name+".weight"), e.init(name+".bias"), stride, pad)
}

func (e exporter) groupNorm(name string, x onnx.Value, eps float64) onnx.Value {
	return e.g.GroupNorm(x, e.c.NormNumGroups, e.init(name+".weight"), e.init(name+".bias"), float32(eps))
}

func (e exporter) layerNorm(name string, x onnx.Value) onnx.Value {
	return e.g.LayerNorm(x, e.init(name+".weight"), e.init(name+".bias"), layerNormEps)
}

func (e exporter) resnet(r resnet, x, tact onnx.Value) onnx.Value {
	g := e.g
	g.Push(r.Name)
	defer g.Pop()
	h := e.conv(r.Name+".conv1", g.SiLU(e.groupNorm(r.Name+".norm1", x, e.c.NormEps)), 1, 1)
	h = g.Add(h, g.Unsqueeze(e.linear(r.Name+".time_emb_proj", tact, true), 2, 3))
	h = e.conv(r.Name+".conv2", g.SiLU(e.groupNorm(r.Name+".norm2", h, e.c.NormEps)), 1, 1)
	if r.In != r.Out {
		x = e.conv(r.Name+".conv_shortcut", x, 1, 0)
	}
	return g.Add(x, h)
}

func (e exporter) attention(name string, x, ctx onnx.Value, C int) onnx.Value {
	q := e.linear(name+".to_q", x, false)
	k := e.linear(name+".to_k", ctx, false)
	v := e.linear(name+".to_v", ctx, false)
	return e.linear(name+".to_out.0", e.g.Attention(q, k, v, e.c.AttentionHeadDim, C, onnx.Value{}), true)
}

func (e exporter) transformer(t transformer, x, ctx onnx.Value) onnx.Value {
	g := e.g
	g.Push(t.Name)
	defer g.Pop()
	C := int64(t.C)
	h := e.groupNorm(t.Name+".norm", x, transformerNormEps)
	h = e.conv(t.Name+".proj_in", h, 1, 0)
	h = g.Transpose(g.Reshape(h, 0, C, -1), 0, 2, 1) // [B,HW,C]
	b := t.Name + ".transformer_blocks.0"
	a := e.layerNorm(b+".norm1", h)
	h = g.Add(h, e.attention(b+".attn1", a, a, t.C))
	h = g.Add(h, e.attention(b+".attn2", e.layerNorm(b+".norm2", h), ctx, t.C))
	p := e.linear(b+".ff.net.0.proj", e.layerNorm(b+".norm3", h), true)
	hidden := g.Slice(p, []int64{0}, []int64{4 * C}, []int64{-1})
	gate := g.Slice(p, []int64{4 * C}, []int64{8 * C}, []int64{-1})
	h = g.Add(h, e.linear(b+".ff.net.2", g.Mul(hidden, g.Gelu(gate)), true))
	h = g.ReshapeV(g.Transpose(h, 0, 2, 1), g.Shape(x))
	return g.Add(e.conv(t.Name+".proj_out", h, 1, 0), x)
}

// Export builds the UNet as an ONNX graph with SD's interface (ml/sdmodel's
// names): sample float32[batch,C,height,width], timestep float32[batch]
// (or [1], expanded to the batch as diffusers' export does),
// encoder_hidden_states float32[batch,sequence,D] → out_sample
// float32[batch,C,height,width]. Height and width are dynamic (multiples of
// c.Downscale()).
func Export(c Config, w model.Weights) (*onnx.Graph, error) {
	if err := Check(c, w); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("unet")
	e := exporter{c, g, w}
	x := g.Input(sdmodel.InSample, onnx.Float, "batch", c.InChannels, "height", "width")
	t := g.Input(sdmodel.InTimestep, onnx.Float, "batch")
	ctx := g.Input(sdmodel.InContext, onnx.Float, "batch", "sequence", c.CrossAttentionDim)

	batch := g.Slice(g.Shape(x), []int64{0}, []int64{1}, []int64{0})
	t = g.Node("Expand", []onnx.Value{t, batch})
	freqs := c.timeFreqs()
	arg := g.Mul(g.Unsqueeze(t, 1), g.Const(freqs, 1, len(freqs)))
	temb := g.Concat(1, g.Cos(arg), g.Sin(arg))
	temb = e.linear("time_embedding.linear_1", temb, true)
	temb = e.linear("time_embedding.linear_2", g.SiLU(temb), true)
	tact := g.SiLU(temb)

	h := e.conv("conv_in", x, 1, 1)
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
			h = e.conv(b.Sampler, h, 2, 1)
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
			h = e.conv(b.Sampler, g.Upsample2x(h), 1, 1)
		}
	}
	h = e.conv("conv_out", g.SiLU(e.groupNorm("conv_norm_out", h, c.NormEps)), 1, 1)
	g.Output(sdmodel.OutNoise, h, "batch", c.OutChannels, "height", "width")
	return g, g.Err()
}

// WriteONNX exports the UNet to dir/unet/model.onnx (ml/sdmodel's file
// name); opts go to onnx's Save (large weights go to a side file).
func WriteONNX(dir string, c Config, w model.Weights, opts ...onnx.SaveOption) error {
	g, err := Export(c, w)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, sdmodel.UNetFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := g.Save(p, opts...); err != nil {
		return fmt.Errorf("sd: export %s: %w", p, err)
	}
	return nil
}
