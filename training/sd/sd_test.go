package sd

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/ort"
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
	}
	specs := Specs(SD1())
	// diffusers' UNet2DConditionModel for SD 1.x (v1-4, v1-5) has 859,520,964 weights in 686 tensors.
	if n := model.ParamCount(specs); n != 859520964 {
		t.Errorf("SD 1.x UNet has %d weights, want 859520964", n)
	}
	if len(specs) != 686 {
		t.Errorf("SD 1.x UNet has %d tensors, want 686", len(specs))
	}
	shapes := map[string][]int{}
	for _, s := range specs {
		shapes[s.Name] = s.Shape
	}
	for name, want := range map[string][]int{
		"conv_in.weight":                                                       {320, 4, 3, 3},
		"time_embedding.linear_1.weight":                                       {1280, 320},
		"down_blocks.1.resnets.0.conv_shortcut.weight":                         {640, 320, 1, 1},
		"down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight":    {320, 768},
		"down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj.weight": {10240, 1280},
		"down_blocks.2.attentions.0.proj_in.weight":                            {1280, 1280, 1, 1},
		"down_blocks.2.downsamplers.0.conv.weight":                             {1280, 1280, 3, 3},
		"mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.bias":      {1280},
		"up_blocks.0.resnets.2.conv1.weight":                                   {1280, 2560, 3, 3},
		"up_blocks.1.resnets.2.conv_shortcut.weight":                           {1280, 1920, 1, 1},
		"up_blocks.3.resnets.0.conv1.weight":                                   {320, 960, 3, 3},
		"up_blocks.2.upsamplers.0.conv.weight":                                 {640, 640, 3, 3},
		"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight":        {320, 1280},
		"conv_out.weight": {4, 320, 3, 3},
	} {
		if !slices.Equal(shapes[name], want) {
			t.Errorf("%s: shape %v, want %v", name, shapes[name], want)
		}
	}
	for _, absent := range []string{"down_blocks.3.downsamplers.0.conv.weight", "up_blocks.3.upsamplers.0.conv.weight", "down_blocks.3.attentions.0.norm.weight", "up_blocks.0.attentions.0.norm.weight"} {
		if shapes[absent] != nil {
			t.Errorf("%s should not exist", absent)
		}
	}
	t.Logf("tiny UNet: %d weights in %d tensors", model.ParamCount(Specs(Tiny())), len(Specs(Tiny())))
}

func TestLoadWeightsStrict(t *testing.T) {
	c := Tiny()
	dir := t.TempDir()
	good := NewWeights(c, 1)
	path := filepath.Join(dir, "unet.safetensors")
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
	// A prefixed checkpoint with another network's tensors beside the UNet's.
	pre := model.Weights{"text_encoder.x": {Shape: []int{1}, Data: []float32{1}}}
	for k, v := range good {
		pre["unet."+k] = v
	}
	ppath := filepath.Join(dir, "ckpt.safetensors")
	if err := pre.Save(ppath, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWeights(ppath, c, "unet."); err != nil {
		t.Fatal(err)
	}

	bad := good.Clone()
	var removed []string
	for k := range bad {
		if strings.HasPrefix(k, "up_blocks.1.") { // a whole block: more than 8 tensors, all must be named
			removed = append(removed, k)
			delete(bad, k)
		}
	}
	bad["mystery.weight"] = &model.Tensor{Shape: []int{2}, Data: []float32{1, 2}}
	bad["conv_out.weight"] = &model.Tensor{Shape: []int{4, 32, 3, 2}, Data: make([]float32, 4*32*6)}
	p := filepath.Join(dir, "bad.safetensors")
	if err := bad.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	_, err = LoadWeights(p, c, "")
	if err == nil {
		t.Fatal("loaded without error")
	}
	msg := err.Error()
	want := append([]string{p, "unexpected: mystery.weight", "conv_out.weight has shape [4 32 3 2], want [4 32 3 3]"}, removed...)
	for _, s := range want {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not say %q:\n%s", s, msg)
		}
	}
	if len(removed) < 20 {
		t.Errorf("only %d tensors removed", len(removed))
	}
}

func TestFLOPs(t *testing.T) {
	c := SD1()
	f := c.ForwardFLOPs(1, 64, 64, 77)
	t.Logf("SD 1.x UNet, 512x512 (64x64 latent), batch 1, 77 tokens: %.4g FLOPs per forward (%.1f GMAC), %.4g per training step",
		float64(f), float64(f)/2e9, float64(c.StepFLOPs(1, 64, 64, 77)))
	if f < 6e11 || f > 1e12 {
		t.Errorf("forward FLOPs %.3g outside the known ~0.8 TFLOP ballpark", float64(f))
	}
	if c.ForwardFLOPs(2, 64, 64, 77) != 2*f {
		t.Error("FLOPs do not scale with the batch")
	}
	tf := Tiny().ForwardFLOPs(1, 16, 16, 77)
	t.Logf("tiny UNet, 16x16 latent: %.4g FLOPs per forward", float64(tf))
}

type inputs struct {
	B, H, W, L  int
	sample, ctx []float32
	ts          []float32
}

func testInputs(c Config, B, S, L int) inputs {
	return inputs{B: B, H: S, W: S, L: L,
		sample: layerstest.Randn(B*c.InChannels*S*S, 1, 1),
		ts:     []float32{0, 417, 999, 250}[:B],
		ctx:    layerstest.Randn(B*L*c.CrossAttentionDim, 2, 1),
	}
}

func (in inputs) args(c Config, w model.Weights) []any {
	var args []any
	for _, s := range Specs(c) {
		args = append(args, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	return append(args,
		tensors.FromFlatDataAndDimensions(in.sample, in.B, c.InChannels, in.H, in.W),
		tensors.FromFlatDataAndDimensions(in.ts, in.B),
		tensors.FromFlatDataAndDimensions(in.ctx, in.B, in.L, c.CrossAttentionDim))
}

func forward(t *testing.T, be backends.Backend, c Config, w model.Weights, in inputs, opts Options) []float32 {
	specs := Specs(c)
	P := len(specs)
	out := MustExecOnceN(be, func(x []*Node) []*Node {
		y := Forward(c, model.LookupFrom(specs, x[:P]), x[P], x[P+1], x[P+2], opts)
		model.Release(y.Graph())
		return []*Node{y}
	}, in.args(c, w)...)
	return tensors.MustCopyFlatData[float32](out[0])
}

// TestConvNative checks the im2col convolutions against GoMLX's own
// ConvGeneral (whose forward pass the pure-Go backend has).
func TestConvNative(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	in := testInputs(c, 2, 8, 7)
	be := layerstest.Backend(t)
	layerstest.Compare(t, "im2col vs native conv", forward(t, be, c, w, in, Options{Conv: ConvIm2col}), forward(t, be, c, w, in, Options{Conv: ConvNative}), 1e-5)
}

// TestONNXParity exports the tiny UNet and runs it in onnxruntime against
// the GoMLX forward on the same weights and inputs.
func TestONNXParity(t *testing.T) {
	if err := ort.Init(); err != nil {
		if errors.Is(err, ort.ErrNoLibrary) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	in := testInputs(c, 3, 16, 77)
	got := forward(t, layerstest.Backend(t), c, w, in, Options{})

	s, err := ort.Load(filepath.Join(dir, sdmodel.UNetFile), ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run := func(ts []float32) []float32 {
		res, err := s.Run(map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(in.sample, int64(in.B), int64(c.InChannels), int64(in.H), int64(in.W)),
			sdmodel.InTimestep: ort.F32(ts, int64(len(ts))),
			sdmodel.InContext:  ort.F32(in.ctx, int64(in.B), int64(in.L), int64(c.CrossAttentionDim)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res[sdmodel.OutNoise].Float32()
	}
	want := run(in.ts)
	layerstest.Compare(t, "GoMLX vs onnxruntime out_sample", got, want, 1e-4)

	// A [1] timestep is expanded to the batch, as in diffusers' export.
	one := run([]float32{417})
	n := c.OutChannels * in.H * in.W
	for i := n; i < 2*n; i++ {
		if math.Abs(float64(one[i]-want[i])) > 1e-5 {
			t.Fatalf("timestep [1] = 417 differs from the batch's 417 at %d", i)
		}
	}
}

// TestTrainStep takes one SGD step of the ε-prediction loss on the tiny
// UNet on the pure-Go backend: it must run, produce finite gradients for
// every weight and change the weights.
func TestTrainStep(t *testing.T) {
	c := Tiny()
	specs := Specs(c)
	P := len(specs)
	w := layerstest.Perturbed(NewWeights(c, 4), Specs(c), 0.02)
	B, S, L := 4, 16, 77
	in := testInputs(c, B, S, L)
	in.ts = []float32{10, 300, 600, 900}
	noise := layerstest.Randn(B*c.OutChannels*S*S, 5, 1)
	args := append(in.args(c, w), tensors.FromFlatDataAndDimensions(noise, B, c.OutChannels, S, S))
	be := layerstest.Backend(t)
	const lr = 0.05
	exec := MustNewExec(be, func(x []*Node) []*Node {
		pred := Forward(c, model.LookupFrom(specs, x[:P]), x[P], x[P+1], x[P+2], Options{})
		loss := ReduceAllMean(Square(Sub(pred, x[P+3])))
		grads := Gradient(loss, x[:P]...)
		model.Release(loss.Graph())
		out := []*Node{loss}
		for i, gr := range grads {
			out = append(out, Sub(x[i], MulScalar(gr, lr)), ReduceAllMax(Abs(gr)))
		}
		return out
	})
	defer exec.Finalize()
	start := time.Now()
	outs := exec.MustExec(args...)
	first := time.Since(start)
	loss0 := tensors.ToScalar[float32](outs[0])
	nw := model.Weights{}
	changed := 0
	for i, s := range specs {
		g := tensors.ToScalar[float32](outs[2+2*i])
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			t.Errorf("%s: gradient not finite", s.Name)
		}
		d := tensors.MustCopyFlatData[float32](outs[1+2*i])
		nw[s.Name] = &model.Tensor{Shape: s.Shape, Data: d}
		if !slices.Equal(d, w[s.Name].Data) {
			changed++
		}
	}
	if changed < P*9/10 {
		t.Errorf("only %d of %d weight tensors changed", changed, P)
	}
	args2 := append(in.args(c, nw), tensors.FromFlatDataAndDimensions(noise, B, c.OutChannels, S, S))
	start = time.Now()
	outs = exec.MustExec(args2...)
	step := time.Since(start)
	loss1 := tensors.ToScalar[float32](outs[0])
	f := c.StepFLOPs(B, S, S, L)
	t.Logf("tiny UNet (%d weights), batch %d, %dx%d latent, %d tokens: loss %.4f → %.4f after one step; first step (with compile) %.2fs, step %.2fs; %.3g FLOP/step (%.2f GFLOP/s)",
		model.ParamCount(specs), B, S, S, L, loss0, loss1, first.Seconds(), step.Seconds(), float64(f), float64(f)/step.Seconds()/1e9)
	if !(loss1 < loss0) {
		t.Errorf("loss did not fall: %v → %v", loss0, loss1)
	}
}

// TestGradientDirectional checks the whole gradient (im2col Gather,
// GroupNorm, attention, GEGLU, upsampling, skips) against a central finite
// difference along the gradient itself: (L(w+h·g) - L(w-h·g)) / 2h ≈ |g|².
func TestGradientDirectional(t *testing.T) {
	c := Tiny()
	specs := Specs(c)
	P := len(specs)
	w := layerstest.Perturbed(NewWeights(c, 6), Specs(c), 0.05)
	in := testInputs(c, 1, 8, 7)
	noise := layerstest.Randn(c.OutChannels*8*8, 7, 1)
	be := layerstest.Backend(t)
	lossOf := func(x []*Node) *Node {
		pred := Forward(c, model.LookupFrom(specs, x[:P]), x[P], x[P+1], x[P+2], Options{})
		return ReduceAllMean(Square(Sub(pred, x[P+3])))
	}
	args := func(w model.Weights) []any {
		return append(in.args(c, w), tensors.FromFlatDataAndDimensions(noise, 1, c.OutChannels, 8, 8))
	}
	outs := MustExecOnceN(be, func(x []*Node) []*Node {
		loss := lossOf(x)
		g := Gradient(loss, x[:P]...)
		model.Release(loss.Graph())
		return g
	}, args(w)...)
	var g2 float64
	grads := make([][]float32, P)
	for i := range specs {
		grads[i] = tensors.MustCopyFlatData[float32](outs[i])
		for _, v := range grads[i] {
			g2 += float64(v) * float64(v)
		}
	}
	h := 1e-2 / math.Sqrt(g2)
	shift := func(sign float64) model.Weights {
		out := w.Clone()
		for i, s := range specs {
			for j := range out[s.Name].Data {
				out[s.Name].Data[j] += float32(sign * h * float64(grads[i][j]))
			}
		}
		return out
	}
	loss := MustNewExec(be, func(x []*Node) *Node { return lossOf(x) })
	defer loss.Finalize()
	lp := tensors.ToScalar[float32](loss.MustExec(args(shift(1))...)[0])
	lm := tensors.ToScalar[float32](loss.MustExec(args(shift(-1))...)[0])
	fd := (float64(lp) - float64(lm)) / (2 * h)
	t.Logf("|g|² = %.6g, finite difference %.6g (relative %.2g)", g2, fd, math.Abs(fd-g2)/g2)
	if math.Abs(fd-g2) > 0.02*g2 {
		t.Errorf("gradient and finite difference disagree: |g|² = %.6g, finite difference %.6g", g2, fd)
	}
}

// TestSD1GraphShapes builds (without running) the full SD 1.x UNet graph on
// a 16×16 latent, so GoMLX's shape checks verify every channel count and
// skip connection of the full config.
func TestSD1GraphShapes(t *testing.T) {
	c := SD1()
	g := NewGraph(layerstest.Backend(t), "sd1")
	defer g.Finalize()
	specs := Specs(c)
	nodes := make([]*Node, len(specs))
	for i, s := range specs {
		nodes[i] = Parameter(g, s.Name, shapes.Make(dtypes.Float32, s.Shape...))
	}
	x := Parameter(g, "sample", shapes.Make(dtypes.Float32, 1, 4, 16, 16))
	ts := Parameter(g, "timestep", shapes.Make(dtypes.Float32, 1))
	ctx := Parameter(g, "encoder_hidden_states", shapes.Make(dtypes.Float32, 1, 77, 768))
	y := Forward(c, model.LookupFrom(specs, nodes), x, ts, ctx, Options{})
	model.Release(g)
	if want := []int{1, 4, 16, 16}; !slices.Equal(y.Shape().Dimensions, want) {
		t.Errorf("out_sample shape %v, want %v", y.Shape().Dimensions, want)
	}
}
