package training

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"

	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
)

// unetConfig is testConfig with SD 1.x's UNet (tiny width) as the
// denoiser, predicting ε with the paper's objective.
func unetConfig(t *testing.T) Config {
	cfg := testConfig(t)
	u := sd.Tiny()
	u.CrossAttentionDim = cfg.Model.TextWidth
	cfg.UNet = &u
	cfg.Model.Output = model.OutputEps
	cfg.BatchSize = 4
	return cfg
}

// baseWeights is a "base model": the UNet's weights read back from a
// diffusers-named safetensors file (as a user's SD checkpoint would be),
// plus a fresh projection.
func baseWeights(t *testing.T, cfg Config) model.Weights {
	path := filepath.Join(t.TempDir(), "diffusion_pytorch_model.safetensors")
	if err := sd.NewWeights(*cfg.UNet, 11).Save(path, nil); err != nil {
		t.Fatal(err)
	}
	u, err := sd.LoadWeights(path, *cfg.UNet, "")
	if err != nil {
		t.Fatal(err)
	}
	w := model.NewWeights(cfg.Model.ProjectionSpecs(), 12)
	for name, x := range u {
		w[model.DenoiserPrefix+name] = x
	}
	return w
}

// TestUNetTrains: the Face0 objective trains SD 1.x's UNet from base
// weights (the paper's setting, here at tiny width): the loss on a fixed
// batch falls; adapter-only leaves every UNet weight as it was; a resumed
// run continues bit for bit.
func TestUNetTrains(t *testing.T) {
	cfg := unetConfig(t)
	cfg.CheckpointEvery = 3
	data := NewSynthetic(cfg.Model, 16, 3)
	init := baseWeights(t, cfg)
	tr, err := New(cfg, data, init.Clone())
	if err != nil {
		t.Fatal(err)
	}
	eval, err := tr.Batch([]int{0, 1, 2, 3, 4, 5, 6, 7}, 99)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := tr.EvalLoss(eval, false)
	var losses []StepResult
	steps := 12
	if err := tr.Run(context.Background(), steps, func(r StepResult) { losses = append(losses, r) }); err != nil {
		t.Fatal(err)
	}
	after, _ := tr.EvalLoss(eval, false)
	t.Logf("UNet %d weights: eval loss %.4f → %.4f over %d steps; losses %v", model.ParamCount(cfg.Specs()), before, after, steps, lossesOf(losses))
	if !(after < 0.9*before) {
		t.Errorf("eval loss %.4f → %.4f: want a drop of at least 10%%", before, after)
	}

	// Resume from the checkpoint at step 9: steps 10..12 are the same.
	ck := filepath.Join(cfg.CheckpointDir, "checkpoint-000000009")
	resumed, err := ResumeFrom(cfg, data, ck)
	if err != nil {
		t.Fatal(err)
	}
	var again []StepResult
	if err := resumed.Run(context.Background(), steps, func(r StepResult) { again = append(again, r) }); err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if w := losses[9+i]; r.Loss != w.Loss || r.GradNorm != w.GradNorm {
			t.Errorf("resumed step %d: loss %v norm %v, straight %v %v", 10+i, r.Loss, r.GradNorm, w.Loss, w.GradNorm)
		}
	}

	// Export: SD's UNet and the projection as ONNX in the model-folder
	// layout; onnxruntime runs both with the right shapes.
	if ort.Init() == nil {
		dir := t.TempDir()
		if err := cfg.WriteONNX(dir, tr.EMAWeights()); err != nil {
			t.Fatal(err)
		}
		run := func(file string, in map[string]ort.Tensor, out string, shape ...int64) {
			s, err := ort.Load(filepath.Join(dir, file), ort.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res, err := s.Run(in)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if got := res[out].Shape; !slices.Equal(got, shape) {
				t.Errorf("%s: %s shape %v, want %v", file, out, got, shape)
			}
		}
		m := cfg.Model
		C, S, L, D := int64(m.LatentChannels), int64(m.LatentSize), int64(m.ContextLength), int64(m.TextWidth)
		run(sdmodel.UNetFile, map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(make([]float32, 2*C*S*S), 2, C, S, S),
			sdmodel.InTimestep: ort.F32([]float32{999, 10}, 2),
			sdmodel.InContext:  ort.F32(make([]float32, 2*L*D), 2, L, D),
		}, sdmodel.OutNoise, 2, C, S, S)
		run(sdmodel.ProjectionFile, map[string]ort.Tensor{sdmodel.InEmbedding: ort.F32(make([]float32, m.EmbeddingDim), 1, int64(m.EmbeddingDim))},
			sdmodel.OutFaceTokens, 1, int64(m.FaceTokens), D)
	} else {
		t.Log("onnxruntime not installed: export not checked (make setup installs it)")
	}

	// Adapter-only: the UNet is frozen, the projection learns.
	acfg := unetConfig(t)
	acfg.AdapterOnly = true
	acfg.CheckpointEvery = 0
	ad, err := New(acfg, data, init.Clone())
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.Run(context.Background(), 2, nil); err != nil {
		t.Fatal(err)
	}
	w1 := ad.Weights()
	for name, x := range init {
		same := true
		for j := range x.Data {
			if x.Data[j] != w1[name].Data[j] {
				same = false
				break
			}
		}
		if proj := strings.HasPrefix(name, model.ProjectionPrefix); same == proj {
			t.Errorf("adapter-only: %s changed=%v", name, !same)
		}
	}
}

func TestUNetConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
		want   string
	}{
		{"context width", func(c *Config) { c.UNet.CrossAttentionDim = 24 }, "cross_attention_dim 24"},
		{"channels", func(c *Config) { c.UNet.InChannels = 3 }, "takes 3"},
		{"v-skip", func(c *Config) { c.Model.Output = model.OutputVSkip }, "predicts ε"},
		{"latent size", func(c *Config) { c.Model.LatentSize, c.Model.PatchSize = 9, 1 }, "multiple of the UNet's downscale"},
	} {
		cfg := unetConfig(t)
		tc.adjust(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A base weight file missing a UNet tensor is refused by name.
	cfg := unetConfig(t)
	w := baseWeights(t, cfg)
	delete(w, "unet.conv_out.bias")
	if _, err := New(cfg, NewSynthetic(cfg.Model, 8, 1), w); err == nil || !strings.Contains(err.Error(), "missing unet.conv_out.bias") {
		t.Errorf("missing tensor: %v", err)
	}
}
