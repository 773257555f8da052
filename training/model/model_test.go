package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
)

func testBackend(t *testing.T) backends.Backend {
	t.Helper()
	// ops_sequential: see training.Backend (parallel op scheduling deadlocks in v0.26.0).
	b, err := backends.NewWithConfig("go:ops_sequential")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSpecs(t *testing.T) {
	c := Tiny()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range c.Specs() {
		if seen[s.Name] {
			t.Errorf("duplicate weight %s", s.Name)
		}
		seen[s.Name] = true
	}
	E, H, D := c.EmbeddingDim, c.ProjHidden, c.TextWidth
	wantProj := E*H + H + 2*(H*H+H) + H*3*D + 3*D
	if got := ParamCount(c.ProjectionSpecs()); got != wantProj {
		t.Errorf("projection has %d weights, want %d", got, wantProj)
	}
	paper := c.PaperProjection()
	paper.EmbeddingDim = 512
	t.Logf("tiny: projection %d, denoiser %d weights; paper-size projection (E=512, H=768, D=768): %d",
		ParamCount(c.ProjectionSpecs()), ParamCount(c.DenoiserSpecs()), ParamCount(paper.ProjectionSpecs()))
	bad := c
	bad.Heads = 3
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "heads") {
		t.Errorf("width 64 with 3 heads: %v", err)
	}
}

func TestLoadWeightsStrict(t *testing.T) {
	c := Tiny()
	specs := c.Specs()
	dir := t.TempDir()
	good := NewWeights(specs, 1)
	path := filepath.Join(dir, "w.safetensors")
	if err := good.Save(path, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWeights(path, specs)
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range good {
		for i := range x.Data {
			if w[name].Data[i] != x.Data[i] {
				t.Fatalf("%s[%d] changed in the round trip", name, i)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(Weights)
		want   []string
	}{
		{"missing", func(w Weights) { delete(w, "unet.transformer_blocks.1.attn2.to_k.weight") },
			[]string{"missing unet.transformer_blocks.1.attn2.to_k.weight"}},
		{"extra", func(w Weights) { w["unet.mystery"] = &Tensor{Shape: []int{2}, Data: []float32{1, 2}} },
			[]string{"unexpected unet.mystery"}},
		{"mis-shaped", func(w Weights) {
			w["projection.proj.3.weight"] = &Tensor{Shape: []int{64, 95}, Data: make([]float32, 64*95)}
		}, []string{"projection.proj.3.weight has shape [64 95], want [64 96]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := good.Clone()
			tc.mutate(w)
			p := filepath.Join(dir, tc.name+".safetensors")
			if err := w.Save(p, nil); err != nil {
				t.Fatal(err)
			}
			_, err := LoadWeights(p, specs)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestFaceContext(t *testing.T) {
	c := Tiny()
	c.TextWidth = 2
	B, L, D := 2, c.ContextLength, c.TextWidth
	ctx := make([]float32, B*L*D)
	for i := range ctx {
		ctx[i] = float32(i + 1)
	}
	face := make([]float32, B*3*D)
	for i := range face {
		face[i] = -float32(i + 1)
	}
	out := MustExecOnce(testBackend(t), func(ctx, face, keep *Node) *Node {
		return c.FaceContext(ctx, face, keep)
	}, tensors.FromFlatDataAndDimensions(ctx, B, L, D), tensors.FromFlatDataAndDimensions(face, B, 3, D),
		tensors.FromFlatDataAndDimensions([]float32{1, 0}, B))
	got := tensors.MustCopyFlatData[float32](out)
	for b := range B {
		for l := range L {
			for d := range D {
				i := (b*L+l)*D + d
				want := ctx[i]
				if l >= 74 {
					want = 0
					if b == 0 {
						want = face[(b*3+l-74)*D+d]
					}
				}
				if got[i] != want {
					t.Fatalf("sample %d row %d dim %d: %v, want %v", b, l, d, got[i], want)
				}
			}
		}
	}
}

// perturbed returns w with every weight moved by N(0, std²), so biases and
// norms are not at their trivial initial values.
func perturbed(w Weights, std float64) Weights {
	out := w.Clone()
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range sortedNames(out) {
		for i := range out[name].Data {
			out[name].Data[i] += float32(r.NormFloat64() * std)
		}
	}
	return out
}

func sortedNames(w Weights) []string {
	var names []string
	for k := range w {
		names = append(names, k)
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names
}

func randn(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 9))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// TestONNXParity exports both networks and runs them in onnxruntime against
// the GoMLX forward on the same weights and inputs, for both output
// parameterisations and at integer, fractional and out-of-range timesteps.
func TestONNXParity(t *testing.T) {
	if err := ort.Init(); err != nil {
		if errors.Is(err, ort.ErrNoLibrary) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	for _, output := range []string{OutputEps, OutputVSkip} {
		t.Run(output, func(t *testing.T) { testONNXParity(t, output) })
	}
}

func testONNXParity(t *testing.T, output string) {
	c := Tiny()
	c.Blocks = 2
	c.Output = output
	specs := c.Specs()
	w := perturbed(NewWeights(specs, 3), 0.05)
	dir := t.TempDir()
	if err := c.WriteONNX(dir, w); err != nil {
		t.Fatal(err)
	}
	ts := []float32{0, 417, 650.7, 998.4, 999, 1000.5}
	B := len(ts)
	S, C, L, D, E := c.LatentSize, c.LatentChannels, c.ContextLength, c.TextWidth, c.EmbeddingDim
	sample := randn(B*C*S*S, 1)
	ctx := randn(B*L*D, 2)
	emb := randn(B*E, 3)

	be := testBackend(t)
	P := len(specs)
	var args []any
	for _, s := range specs {
		args = append(args, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	args = append(args,
		tensors.FromFlatDataAndDimensions(sample, B, C, S, S),
		tensors.FromFlatDataAndDimensions(ts, B),
		tensors.FromFlatDataAndDimensions(ctx, B, L, D),
		tensors.FromFlatDataAndDimensions(emb, B, E))
	outs := MustExecOnceN(be, func(in []*Node) []*Node {
		look := LookupFrom(specs, in[:P])
		out := []*Node{c.Denoiser(look, in[P], in[P+1], in[P+2]), c.Projection(look, in[P+3])}
		Release(out[0].Graph())
		return out
	}, args...)
	gEps := tensors.MustCopyFlatData[float32](outs[0])
	gTok := tensors.MustCopyFlatData[float32](outs[1])

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
	oEps := run(sdmodel.UNetFile, map[string]ort.Tensor{
		sdmodel.InSample:   ort.F32(sample, int64(B), int64(C), int64(S), int64(S)),
		sdmodel.InTimestep: ort.F32(ts, int64(B)),
		sdmodel.InContext:  ort.F32(ctx, int64(B), int64(L), int64(D)),
	}, sdmodel.OutNoise)
	oTok := run(sdmodel.ProjectionFile, map[string]ort.Tensor{
		sdmodel.InEmbedding: ort.F32(emb, int64(B), int64(E)),
	}, sdmodel.OutFaceTokens)

	compare := func(what string, a, b []float32) {
		if len(a) != len(b) {
			t.Fatalf("%s: %d values from GoMLX, %d from onnxruntime", what, len(a), len(b))
		}
		var maxDiff, scale float64
		for i := range a {
			maxDiff = math.Max(maxDiff, math.Abs(float64(a[i]-b[i])))
			scale = math.Max(scale, math.Abs(float64(b[i])))
		}
		t.Logf("%s: max |GoMLX - onnxruntime| = %.3g, output scale (max |y|) %.3g, relative %.3g", what, maxDiff, scale, maxDiff/scale)
		if scale == 0 || maxDiff > 1e-4*scale {
			t.Errorf("%s: GoMLX and onnxruntime differ by %.3g at output scale %.3g (relative %.3g > 1e-4)", what, maxDiff, scale, maxDiff/scale)
		}
	}
	compare("denoiser out_sample", gEps, oEps)
	compare("projection tokens", gTok, oTok)

	// A [1] timestep is expanded to the batch, as in diffusers' export.
	one := run(sdmodel.UNetFile, map[string]ort.Tensor{
		sdmodel.InSample:   ort.F32(sample, int64(B), int64(C), int64(S), int64(S)),
		sdmodel.InTimestep: ort.F32([]float32{417}, 1),
		sdmodel.InContext:  ort.F32(ctx, int64(B), int64(L), int64(D)),
	}, sdmodel.OutNoise)
	n := C * S * S
	for i := n; i < 2*n; i++ {
		if math.Abs(float64(one[i]-oEps[i])) > 1e-5 {
			t.Fatalf("timestep [1] = 417 differs from the batch's 417 at %d", i)
		}
	}
}

// TestFastDotGradient checks the matrix-product gradients this package
// installs against GoMLX's own on the whole model.
func TestFastDotGradient(t *testing.T) {
	c := Tiny()
	c.Width, c.Heads, c.TimeFreqDim, c.TimeDim, c.TextWidth = 32, 2, 32, 32, 16
	specs := c.Specs()
	w := perturbed(NewWeights(specs, 5), 0.05)
	B := 2
	P := len(specs)
	var args []any
	for _, s := range specs {
		args = append(args, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	S, C, L, D, E := c.LatentSize, c.LatentChannels, c.ContextLength, c.TextWidth, c.EmbeddingDim
	args = append(args,
		tensors.FromFlatDataAndDimensions(randn(B*C*S*S, 1), B, C, S, S),
		tensors.FromFlatDataAndDimensions([]float32{3, 700}, B),
		tensors.FromFlatDataAndDimensions(randn(B*L*D, 2), B, L, D),
		tensors.FromFlatDataAndDimensions(randn(B*E, 3), B, E),
		tensors.FromFlatDataAndDimensions([]float32{1, 1}, B))
	be := testBackend(t)
	grads := func(fast bool) [][]float32 {
		outs := MustExecOnceN(be, func(in []*Node) []*Node {
			look := LookupFrom(specs, in[:P])
			ctx := c.FaceContext(in[P+2], c.Projection(look, in[P+3]), in[P+4])
			loss := ReduceAllMean(Square(c.Denoiser(look, in[P], in[P+1], ctx)))
			if !fast {
				Release(loss.Graph()) // unmarked: GoMLX's own DotGeneral gradient
			}
			g := Gradient(loss, in[:P]...)
			Release(loss.Graph())
			return g
		}, args...)
		out := make([][]float32, len(outs))
		for i, o := range outs {
			out[i] = tensors.MustCopyFlatData[float32](o)
		}
		return out
	}
	fast, slow := grads(true), grads(false)
	for i, s := range specs {
		var maxDiff, scale float64
		for j := range fast[i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(fast[i][j]-slow[i][j])))
			scale = math.Max(scale, math.Abs(float64(slow[i][j])))
		}
		if maxDiff > 1e-5*math.Max(scale, 1e-3) {
			t.Errorf("%s: gradients differ by %.3g (scale %.3g)", s.Name, maxDiff, scale)
		}
	}
	fastMu.Lock()
	left := len(fastDots)
	fastMu.Unlock()
	if left != 0 {
		t.Errorf("%d marked nodes left after Release", left)
	}
}

func TestOutputConfig(t *testing.T) {
	if got := Tiny().OutputKind(); got != OutputVSkip {
		t.Errorf("Tiny output %q, want %q", got, OutputVSkip)
	}
	var old Config // a config from before the field: no "output" in its JSON
	if got := old.OutputKind(); got != OutputEps {
		t.Errorf("empty output means %q, want %q", got, OutputEps)
	}
	c := Tiny()
	c.Output = "x0"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "output") {
		t.Errorf("output x0: err %v, want an output error", err)
	}
	a := alphasCumprod()
	if len(a) != 1000 || math.Abs(float64(a[999])-0.0047) > 1e-4 {
		t.Fatalf("ᾱ table: %d values, ᾱ_999 = %g (want 1000, ≈0.0047)", len(a), a[len(a)-1])
	}
	for _, c := range []struct{ t, want float64 }{
		{417, float64(a[417])},
		{417.25, 0.75*float64(a[417]) + 0.25*float64(a[418])},
		{-3, float64(a[0])},
		{999, float64(a[999])},
		{1200, float64(a[999])},
	} {
		if got := AlphaBar(c.t); math.Abs(got-c.want) > 1e-7 {
			t.Errorf("AlphaBar(%g) = %g, want %g", c.t, got, c.want)
		}
	}
}
