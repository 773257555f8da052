package vae

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers/layerstest"
	"github.com/face0/face0/training/model"
)

func TestSpecs(t *testing.T) {
	for _, c := range []Config{SD1(), Tiny()} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, s := range Specs(c) {
			if seen[s.Name] {
				t.Errorf("duplicate weight %s", s.Name)
			}
			seen[s.Name] = true
		}
		if len(EncoderSpecs(c))+len(DecoderSpecs(c)) != len(Specs(c)) {
			t.Error("encoder and decoder specs do not partition Specs")
		}
	}
	c := SD1()
	specs := Specs(c)
	// diffusers' AutoencoderKL for SD 1.x has 83,653,863 weights in 248 tensors.
	if n := model.ParamCount(specs); n != 83653863 {
		t.Errorf("SD 1.x VAE has %d weights, want 83653863", n)
	}
	if len(specs) != 248 {
		t.Errorf("SD 1.x VAE has %d tensors, want 248", len(specs))
	}
	t.Logf("SD 1.x VAE: %d weights (encoder+quant_conv %d, post_quant_conv+decoder %d) in %d tensors",
		model.ParamCount(specs), model.ParamCount(EncoderSpecs(c)), model.ParamCount(DecoderSpecs(c)), len(specs))
	got := map[string][]int{}
	for _, s := range specs {
		got[s.Name] = s.Shape
	}
	for name, want := range map[string][]int{
		"encoder.conv_in.weight":                               {128, 3, 3, 3},
		"encoder.down_blocks.1.resnets.0.conv_shortcut.weight": {256, 128, 1, 1},
		"encoder.down_blocks.0.downsamplers.0.conv.weight":     {128, 128, 3, 3},
		"encoder.mid_block.attentions.0.to_q.weight":           {512, 512},
		"encoder.mid_block.attentions.0.to_out.0.bias":         {512},
		"encoder.mid_block.attentions.0.group_norm.weight":     {512},
		"encoder.conv_out.weight":                              {8, 512, 3, 3},
		"quant_conv.weight":                                    {8, 8, 1, 1},
		"post_quant_conv.weight":                               {4, 4, 1, 1},
		"decoder.conv_in.weight":                               {512, 4, 3, 3},
		"decoder.up_blocks.0.resnets.2.conv2.weight":           {512, 512, 3, 3},
		"decoder.up_blocks.2.resnets.0.conv_shortcut.weight":   {256, 512, 1, 1},
		"decoder.up_blocks.3.resnets.0.conv_shortcut.weight":   {128, 256, 1, 1},
		"decoder.up_blocks.2.upsamplers.0.conv.weight":         {256, 256, 3, 3},
		"decoder.conv_out.weight":                              {3, 128, 3, 3},
	} {
		if !slices.Equal(got[name], want) {
			t.Errorf("%s: shape %v, want %v", name, got[name], want)
		}
	}
	for _, absent := range []string{"encoder.down_blocks.3.downsamplers.0.conv.weight", "decoder.up_blocks.3.upsamplers.0.conv.weight", "decoder.up_blocks.0.resnets.0.conv_shortcut.weight"} {
		if got[absent] != nil {
			t.Errorf("%s should not exist", absent)
		}
	}
}

func TestLoadWeightsStrict(t *testing.T) {
	c := Tiny()
	dir := t.TempDir()
	good := NewWeights(c, 1)
	path := filepath.Join(dir, "vae.safetensors")
	if err := good.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWeights(path, c, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range good {
		if !slices.Equal(w[name].Data, x.Data) {
			t.Fatalf("%s changed in the round trip", name)
		}
	}
	// A prefixed checkpoint with old-style attention names and another network's tensors.
	pre := model.Weights{"unet.x": {Shape: []int{1}, Data: []float32{1}}}
	old := map[string]string{}
	for k, v := range good {
		n := k
		for o, nw := range OldAttentionNames {
			n = strings.Replace(n, "attentions.0."+nw+".", "attentions.0."+o+".", 1)
		}
		if n != k {
			old[n] = k
		}
		pre["vae."+n] = v
	}
	if len(old) != 16 {
		t.Fatalf("%d old-style names, want 16 (2 attentions × 4 linears × 2)", len(old))
	}
	ppath := filepath.Join(dir, "ckpt.safetensors")
	if err := pre.Save(ppath, nil); err != nil {
		t.Fatal(err)
	}
	w, err = LoadWeights(ppath, c, "vae.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w["decoder.mid_block.attentions.0.to_out.0.weight"].Data, good["decoder.mid_block.attentions.0.to_out.0.weight"].Data) {
		t.Error("proj_attn did not load as to_out.0")
	}

	bad := good.Clone()
	var removed []string
	for k := range bad {
		if strings.HasPrefix(k, "decoder.up_blocks.1.") {
			removed = append(removed, k)
			delete(bad, k)
		}
	}
	bad["mystery.weight"] = &model.Tensor{Shape: []int{2}, Data: []float32{1, 2}}
	bad["quant_conv.weight"] = &model.Tensor{Shape: []int{8, 8, 1, 2}, Data: make([]float32, 128)}
	p := filepath.Join(dir, "bad.safetensors")
	if err := bad.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	_, err = LoadWeights(p, c, "")
	if err == nil {
		t.Fatal("loaded without error")
	}
	msg := err.Error()
	want := append([]string{p, "unexpected: mystery.weight", "quant_conv.weight has shape [8 8 1 2], want [8 8 1 1]"}, removed...)
	for _, s := range want {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not say %q:\n%s", s, msg)
		}
	}
	if len(removed) < 16 { // decoder.up_blocks.1 of Tiny: 2 resnets and an upsampler
		t.Errorf("only %d tensors removed", len(removed))
	}
}

func weightArgs(sp []model.ParamSpec, w model.Weights) []any {
	var args []any
	for _, s := range sp {
		args = append(args, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	return args
}

// encode runs Encode and returns mean, logvar and a sample drawn with seed.
func encode(t testing.TB, be backends.Backend, c Config, w model.Weights, x []float32, B, H, W int, seed uint64, opts Options) (mean, logvar, sample []float32) {
	sp := EncoderSpecs(c)
	P := len(sp)
	args := append(weightArgs(sp, w), tensors.FromFlatDataAndDimensions(x, B, c.InChannels, H, W),
		Noise(seed, B, c.LatentChannels, H/c.Downscale(), W/c.Downscale()))
	out := MustExecOnceN(be, func(x []*Node) []*Node {
		m, lv := Encode(c, model.LookupFrom(sp, x[:P]), x[P], opts)
		return []*Node{m, lv, SampleLatent(m, lv, x[P+1])}
	}, args...)
	return tensors.MustCopyFlatData[float32](out[0]), tensors.MustCopyFlatData[float32](out[1]), tensors.MustCopyFlatData[float32](out[2])
}

func decode(t testing.TB, be backends.Backend, c Config, w model.Weights, z []float32, B, h, wd int, opts Options) []float32 {
	sp := DecoderSpecs(c)
	P := len(sp)
	args := append(weightArgs(sp, w), tensors.FromFlatDataAndDimensions(z, B, c.LatentChannels, h, wd))
	out := MustExecOnceN(be, func(x []*Node) []*Node {
		return []*Node{Decode(c, model.LookupFrom(sp, x[:P]), x[P], opts)}
	}, args...)
	return tensors.MustCopyFlatData[float32](out[0])
}

// TestConvNative checks the im2col convolutions, the downsamplers'
// asymmetric padding included, against GoMLX's ConvGeneral.
func TestConvNative(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	be := layerstest.Backend(t)
	x := layerstest.Randn(2*3*32*32, 1, 1)
	m1, _, _ := encode(t, be, c, w, x, 2, 32, 32, 1, Options{Conv: ConvIm2col})
	m2, _, _ := encode(t, be, c, w, x, 2, 32, 32, 1, Options{Conv: ConvNative})
	layerstest.Compare(t, "encoder im2col vs native conv", m1, m2, 1e-5)
	z := layerstest.Randn(2*4*4*4, 2, 1)
	layerstest.Compare(t, "decoder im2col vs native conv", decode(t, be, c, w, z, 2, 4, 4, Options{}), decode(t, be, c, w, z, 2, 4, 4, Options{Conv: ConvNative}), 1e-5)
}

// TestSampleSeeded checks SampleLatent with Noise: the same seed gives the
// same latents, another seed others, and sample = mean + exp(logvar/2)·noise.
func TestSampleSeeded(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	be := layerstest.Backend(t)
	x := layerstest.Randn(1*3*16*16, 1, 1)
	m, lv, s1 := encode(t, be, c, w, x, 1, 16, 16, 7, Options{})
	_, _, s2 := encode(t, be, c, w, x, 1, 16, 16, 7, Options{})
	_, _, s3 := encode(t, be, c, w, x, 1, 16, 16, 8, Options{})
	if !slices.Equal(s1, s2) {
		t.Error("same seed, different samples")
	}
	if slices.Equal(s1, s3) {
		t.Error("different seeds, same samples")
	}
	noise := tensors.MustCopyFlatData[float32](Noise(7, 1, 4, 2, 2))
	for i := range m {
		want := float64(m[i]) + math.Exp(0.5*float64(lv[i]))*float64(noise[i])
		if math.Abs(float64(s1[i])-want) > 1e-5*(1+math.Abs(want)) {
			t.Fatalf("sample[%d] = %g, want %g", i, s1[i], want)
		}
	}
}

// TestONNXParity exports the tiny VAE and runs both halves in onnxruntime
// against the GoMLX forward on the same weights and inputs.
func TestONNXParity(t *testing.T) {
	orttest.Require(t)
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	be := layerstest.Backend(t)
	const B, S = 2, 48 // 48 = 6 latent pixels: odd latent sides stress the padding
	x := layerstest.Randn(B*3*S*S, 1, 1)
	mean, _, _ := encode(t, be, c, w, x, B, S, S, 1, Options{})
	run := func(file string, in map[string]ort.Tensor, out string) []float32 {
		s, err := ort.Load(filepath.Join(dir, file), ort.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		return res[out].Float32()
	}
	want := run(EncoderFile, map[string]ort.Tensor{sdmodel.InSample: ort.F32(x, B, 3, S, S)}, sdmodel.InLatent)
	layerstest.Compare(t, "encoder GoMLX vs onnxruntime latent_sample (mean)", mean, want, 1e-4)

	h := S / 8
	z := layerstest.Randn(B*4*h*h, 2, 1)
	got := decode(t, be, c, w, z, B, h, h, Options{})
	want = run(sdmodel.VAEDecoderFile, map[string]ort.Tensor{sdmodel.InLatent: ort.F32(z, B, 4, int64(h), int64(h))}, sdmodel.OutImage)
	layerstest.Compare(t, "decoder GoMLX vs onnxruntime sample", got, want, 1e-4)
}

// TestSD1GraphShapes builds (without running) the full SD 1.x encoder and
// decoder graphs, so GoMLX's shape checks verify every channel count.
func TestSD1GraphShapes(t *testing.T) {
	c := SD1()
	g := NewGraph(layerstest.Backend(t), "sd1_vae")
	defer g.Finalize()
	specs := Specs(c)
	nodes := make([]*Node, len(specs))
	for i, s := range specs {
		nodes[i] = Parameter(g, s.Name, shapes.Make(dtypes.Float32, s.Shape...))
	}
	w := model.LookupFrom(specs, nodes)
	x := Parameter(g, "sample", shapes.Make(dtypes.Float32, 1, 3, 64, 64))
	m, lv := Encode(c, w, x, Options{})
	y := Decode(c, w, m, Options{})
	if want := []int{1, 4, 8, 8}; !slices.Equal(m.Shape().Dimensions, want) || !slices.Equal(lv.Shape().Dimensions, want) {
		t.Errorf("latent shapes %v %v, want %v", m.Shape().Dimensions, lv.Shape().Dimensions, want)
	}
	if want := []int{1, 3, 64, 64}; !slices.Equal(y.Shape().Dimensions, want) {
		t.Errorf("image shape %v, want %v", y.Shape().Dimensions, want)
	}
}
