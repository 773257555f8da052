package vae

import (
	"maps"
	"path/filepath"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// EncoderFile is where WriteONNX puts the encoder, beside ml/sdmodel's
// sdmodel.VAEDecoderFile (diffusers' ONNX export layout).
const EncoderFile = "vae_encoder/model.onnx"

// exporter writes the VAE into an ONNX graph, NCHW as torch runs it.
type exporter struct {
	layers.Exporter
	c Config
}

// downsample is diffusers' Downsample2D with padding 0: zero pad (0,1,0,1)
// then a stride-2 3×3 conv, as one Conv with pads [top,left,bottom,right] =
// [0,0,1,1].
func (e exporter) downsample(name string, x onnx.Value) onnx.Value {
	return e.G.Conv(x, e.Init(name+".weight"), e.Init(name+".bias"),
		onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 0, 0, 1, 1))
}

func (e exporter) groupNorm(name string, x onnx.Value) onnx.Value {
	return e.GroupNorm(name, x, e.c.NormNumGroups, normEps)
}

func (e exporter) resnet(r resnet, x onnx.Value) onnx.Value {
	g := e.G
	g.Push(r.Name)
	defer g.Pop()
	h := e.Conv(r.Name+".conv1", g.SiLU(e.groupNorm(r.Name+".norm1", x)), 1, 1)
	h = e.Conv(r.Name+".conv2", g.SiLU(e.groupNorm(r.Name+".norm2", h)), 1, 1)
	if r.In != r.Out {
		x = e.Conv(r.Name+".conv_shortcut", x, 1, 0)
	}
	return g.Add(x, h)
}

func (e exporter) attention(name string, x onnx.Value, C int) onnx.Value {
	g := e.G
	g.Push(name)
	defer g.Pop()
	h := e.groupNorm(name+".group_norm", x)
	h = g.Transpose(g.Reshape(h, 0, int64(C), -1), 0, 2, 1) // [B,HW,C]
	q := e.Linear(name+".to_q", h, true)
	k := e.Linear(name+".to_k", h, true)
	v := e.Linear(name+".to_v", h, true)
	o := e.Linear(name+".to_out.0", g.Attention(q, k, v, 1, C, onnx.Value{}), true)
	o = g.ReshapeV(g.Transpose(o, 0, 2, 1), g.Shape(x))
	return g.Add(o, x)
}

func (e exporter) mid(m mid, h onnx.Value) onnx.Value {
	rs := m.resnets()
	h = e.resnet(rs[0], h)
	h = e.attention(m.attention(), h, m.C)
	return e.resnet(rs[1], h)
}

// ExportEncoder builds the encoder as an ONNX graph: sample
// float32[batch,InChannels,height,width] (images in [-1, 1]) →
// latent_sample float32[batch,LatentChannels,height/8,width/8], the latent
// distribution's mean (latent_dist.mode(), unscaled). diffusers' own export
// script samples instead, with torch's RNG, which no ONNX graph can
// reproduce; the mean is the deterministic choice. Only the encoder's
// weights (EncoderSpecs) are read.
func ExportEncoder(c Config, w model.Weights) (*onnx.Graph, error) {
	if err := check(c, Subset(w, EncoderSpecs(c)), EncoderSpecs(c), "VAE encoder"); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("vae_encoder")
	e := exporter{layers.Exporter{G: g, W: w, Pkg: "vae"}, c}
	x := g.Input(sdmodel.InSample, onnx.Float, "batch", c.InChannels, "height", "width")
	h := e.Conv("encoder.conv_in", x, 1, 1)
	for _, s := range c.encoderStages() {
		for _, r := range s.Resnets {
			h = e.resnet(r, h)
		}
		if s.Sampler != "" {
			h = e.downsample(s.Sampler, h)
		}
	}
	h = e.mid(mid{"encoder.mid_block", c.top()}, h)
	h = e.Conv("encoder.conv_out", g.SiLU(e.groupNorm("encoder.conv_norm_out", h)), 1, 1)
	h = e.Conv("quant_conv", h, 1, 0)
	L := int64(c.LatentChannels)
	mean := g.Slice(h, []int64{0}, []int64{L}, []int64{1})
	g.Output(sdmodel.InLatent, mean, "batch", c.LatentChannels, "latent_height", "latent_width")
	return g, g.Err()
}

// ExportDecoder builds the decoder with SD's vae_decoder interface
// (ml/sdmodel's names): latent_sample float32[batch,LatentChannels,height,width]
// (already divided by ScalingFactor) → sample
// float32[batch,OutChannels,8·height,8·width]. Only the decoder's weights
// (DecoderSpecs) are read.
func ExportDecoder(c Config, w model.Weights) (*onnx.Graph, error) {
	if err := check(c, Subset(w, DecoderSpecs(c)), DecoderSpecs(c), "VAE decoder"); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("vae_decoder")
	e := exporter{layers.Exporter{G: g, W: w, Pkg: "vae"}, c}
	z := g.Input(sdmodel.InLatent, onnx.Float, "batch", c.LatentChannels, "height", "width")
	h := e.Conv("post_quant_conv", z, 1, 0)
	h = e.Conv("decoder.conv_in", h, 1, 1)
	h = e.mid(mid{"decoder.mid_block", c.top()}, h)
	for _, s := range c.decoderStages() {
		for _, r := range s.Resnets {
			h = e.resnet(r, h)
		}
		if s.Sampler != "" {
			h = e.Conv(s.Sampler, g.Upsample2x(h), 1, 1)
		}
	}
	h = e.Conv("decoder.conv_out", g.SiLU(e.groupNorm("decoder.conv_norm_out", h)), 1, 1)
	g.Output(sdmodel.OutImage, h, "batch", c.OutChannels, "height_x8", "width_x8")
	return g, g.Err()
}

// WriteONNX exports the decoder to dir/vae_decoder/model.onnx
// (sdmodel.VAEDecoderFile) and the encoder to dir/vae_encoder/model.onnx
// (EncoderFile); opts go to onnx's Save (large weights go to a side file).
func WriteONNX(dir string, c Config, w model.Weights, opts ...onnx.SaveOption) error {
	if err := Check(c, w); err != nil {
		return err
	}
	for _, x := range []struct {
		file  string
		build func(Config, model.Weights) (*onnx.Graph, error)
	}{{sdmodel.VAEDecoderFile, ExportDecoder}, {EncoderFile, ExportEncoder}} {
		g, err := x.build(c, w)
		if err != nil {
			return err
		}
		if err := layers.Save(g, filepath.Join(dir, x.file), "vae", opts...); err != nil {
			return err
		}
	}
	return nil
}

// ReadONNX reads the VAE's weights back from the decoder and encoder
// WriteONNX wrote into dir (vae_decoder/model.onnx, vae_encoder/model.onnx),
// checked against c.
func ReadONNX(dir string, c Config) (model.Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	linear := func(s model.ParamSpec) bool { return len(s.Shape) == 2 } // the attention's projections
	w := model.Weights{}
	for _, part := range []struct {
		file  string
		specs []model.ParamSpec
	}{{sdmodel.VAEDecoderFile, DecoderSpecs(c)}, {EncoderFile, EncoderSpecs(c)}} {
		pw, err := layers.ReadONNX(filepath.Join(dir, filepath.FromSlash(part.file)), part.specs, linear, "vae: the VAE's weights")
		if err != nil {
			return nil, err
		}
		maps.Copy(w, pw)
	}
	return w, nil
}
