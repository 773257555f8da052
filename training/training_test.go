package training

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/training/model"
)

// testConfig is a CI-sized run: width 32, 2 blocks, 8x8x4 latents, a
// 16-wide context, batch 8, a large learning rate.
func testConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.Model.Width = 32
	c.Model.Heads = 2
	c.Model.TimeFreqDim = 32
	c.Model.TimeDim = 32
	c.Model.TextWidth = 16
	c.Model.EmbeddingDim = 32
	c.Model.ProjHidden = 32
	c.LR = 2e-3
	c.EMADecay = 0.99
	c.Seed = 7
	c.CheckpointDir = t.TempDir()
	return c
}

func TestLossDecreases(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 0
	// The 20% drop is calibrated on the ε output, which starts near 1; the
	// v-skip output starts near its trivial-estimate floor (≈0.37 here).
	cfg.Model.Output = model.OutputEps
	data := NewSynthetic(cfg.Model, 64, 3)
	tr, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A fixed evaluation batch: the same examples, timesteps and noise before
	// and after, so the comparison is not at the mercy of the timestep draws.
	idx := make([]int, 32)
	for i := range idx {
		idx[i] = i
	}
	eval, err := tr.Batch(idx, 99)
	if err != nil {
		t.Fatal(err)
	}
	before, err := tr.EvalLoss(eval, false)
	if err != nil {
		t.Fatal(err)
	}
	steps := 60
	if testing.Short() {
		steps = 30
	}
	var losses []float64
	if err := tr.Run(context.Background(), steps, func(r StepResult) { losses = append(losses, r.Loss) }); err != nil {
		t.Fatal(err)
	}
	after, err := tr.EvalLoss(eval, false)
	if err != nil {
		t.Fatal(err)
	}
	afterEMA, err := tr.EvalLoss(eval, true)
	if err != nil {
		t.Fatal(err)
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	first, last := mean(losses[:10]), mean(losses[len(losses)-10:])
	t.Logf("eval loss %.4f → %.4f (EMA %.4f); train loss first 10 %.4f, last 10 %.4f", before, after, afterEMA, first, last)
	if !(after < 0.8*before) {
		t.Errorf("eval loss went %.4f → %.4f after %d steps; want a drop of at least 20%%", before, after, steps)
	}
	if !(last < first) {
		t.Errorf("training loss did not fall: first 10 steps %.4f, last 10 %.4f", first, last)
	}
	if !(afterEMA < before) {
		t.Errorf("EMA weights' eval loss %.4f is not below the initial %.4f", afterEMA, before)
	}
}

// TestResumeExact runs 2N steps straight, and N steps, then a new trainer
// from the checkpoint for N more; the losses, gradient norms and final
// weights must agree bit for bit.
func TestResumeExact(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
	}{
		{"joint", func(*Config) {}},
		{"accum2-adapter", func(c *Config) { c.GradAccum = 2; c.BatchSize = 4; c.AdapterOnly = true }},
		{"text-drop", func(c *Config) { c.TextDropProb = 0.5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const N = 4
			cfg := testConfig(t)
			cfg.CheckpointEvery = N
			cfg.FaceDropProb = 0.3 // more drops in a short run
			tc.adjust(&cfg)
			data := NewSynthetic(cfg.Model, 20, 5) // epochs wrap within the run
			straight, err := New(cfg, data, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want []StepResult
			if err := straight.Run(context.Background(), 2*N, func(r StepResult) { want = append(want, r) }); err != nil {
				t.Fatal(err)
			}

			cfg2 := cfg
			cfg2.CheckpointDir = t.TempDir()
			first, err := New(cfg2, data, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []StepResult
			if err := first.Run(context.Background(), N, func(r StepResult) { got = append(got, r) }); err != nil {
				t.Fatal(err)
			}
			// The killed run left a half-written checkpoint behind.
			os.MkdirAll(filepath.Join(cfg2.CheckpointDir, "checkpoint-000000099.tmp"), 0o755)
			os.MkdirAll(filepath.Join(cfg2.CheckpointDir, "checkpoint-000000098"), 0o755)
			first = nil

			resumed, err := Resume(cfg2, data)
			if err != nil {
				t.Fatal(err)
			}
			if resumed.State().Step != N {
				t.Fatalf("resumed at step %d, want %d", resumed.State().Step, N)
			}
			if err := resumed.Run(context.Background(), 2*N, func(r StepResult) { got = append(got, r) }); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i].Loss != want[i].Loss || got[i].GradNorm != want[i].GradNorm {
					t.Errorf("step %d: resumed loss %v norm %v, straight loss %v norm %v (diff %g)",
						i+1, got[i].Loss, got[i].GradNorm, want[i].Loss, want[i].GradNorm, got[i].Loss-want[i].Loss)
				}
			}
			a, b := straight.EMAWeights(), resumed.EMAWeights()
			for name, x := range a {
				for j := range x.Data {
					if x.Data[j] != b[name].Data[j] {
						t.Fatalf("EMA weight %s[%d]: straight %v, resumed %v", name, j, x.Data[j], b[name].Data[j])
					}
				}
			}
			if straight.State() != resumed.State() {
				t.Errorf("state straight %+v, resumed %+v", straight.State(), resumed.State())
			}
			t.Logf("losses %v", lossesOf(want))
		})
	}
}

func lossesOf(rs []StepResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = math.Round(r.Loss*1e4) / 1e4
	}
	return out
}

func TestAdapterOnlyFreezesDenoiser(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdapterOnly = true
	cfg.CheckpointEvery = 0
	data := NewSynthetic(cfg.Model, 16, 1)
	tr, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	w0 := tr.Weights()
	if err := tr.Run(context.Background(), 2, nil); err != nil {
		t.Fatal(err)
	}
	w1 := tr.Weights()
	changed := map[bool]int{}
	for name, x := range w0 {
		diff := false
		for j := range x.Data {
			if x.Data[j] != w1[name].Data[j] {
				diff = true
				break
			}
		}
		isProj := strings.HasPrefix(name, model.ProjectionPrefix)
		if diff != isProj {
			t.Errorf("%s: changed=%v, want %v", name, diff, isProj)
		}
		changed[diff]++
	}
	t.Logf("changed %d, unchanged %d", changed[true], changed[false])
}

func TestResumeRejectsOtherConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 1
	data := NewSynthetic(cfg.Model, 16, 1)
	tr, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.BatchSize = 4
	if _, err := Resume(other, data); err == nil || !strings.Contains(err.Error(), "batch_size") {
		t.Errorf("resume with another batch size: %v, want an error naming batch_size", err)
	}
	if _, err := Resume(cfg, NewSynthetic(cfg.Model, 17, 1)); err == nil || !strings.Contains(err.Error(), "17 examples") {
		t.Errorf("resume with another dataset: %v", err)
	}
	// A corrupted weight file is reported with the tensor's name.
	dir, _ := LatestCheckpoint(cfg.CheckpointDir)
	w, _, err := model.ReadWeights(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	delete(w, "unet.norm_out.bias")
	if err := w.Save(filepath.Join(dir, WeightsFile), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(cfg, data); err == nil || !strings.Contains(err.Error(), "missing unet.norm_out.bias") {
		t.Errorf("resume with a missing tensor: %v", err)
	}
}

func TestBatchDraws(t *testing.T) {
	cfg := testConfig(t)
	cfg.FaceDropProb = 0.1
	s, err := cfg.schedule()
	if err != nil {
		t.Fatal(err)
	}
	data := NewSynthetic(cfg.Model, 8, 1)
	var empty []float32
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7}
	drops, n := 0, 0
	tmin, tmax := 1e9, -1.0
	for stream := range uint64(400) {
		b, err := makeBatch(cfg, s.AlphasCumprod, data, idx, stream, empty)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b.Size {
			n++
			if b.Keep[i] == 0 {
				drops++
			}
			ts := float64(b.Timesteps[i])
			tmin, tmax = math.Min(tmin, ts), math.Max(tmax, ts)
			ab := s.AlphasCumprod[int(ts)]
			if b.SqrtAB[i] != float32(math.Sqrt(ab)) || b.Sqrt1mAB[i] != float32(math.Sqrt(1-ab)) {
				t.Fatalf("coefficients for t=%v do not match ᾱ", ts)
			}
		}
	}
	rate := float64(drops) / float64(n)
	t.Logf("face drop rate %.3f over %d samples, t in [%v, %v]", rate, n, tmin, tmax)
	if math.Abs(rate-0.1) > 0.03 {
		t.Errorf("face drop rate %.3f, want about 0.1", rate)
	}
	if tmin > 20 || tmax < 980 {
		t.Errorf("timesteps span [%v, %v], want nearly all of [0, 999]", tmin, tmax)
	}
	a, _ := makeBatch(cfg, s.AlphasCumprod, data, idx, 5, empty)
	b, _ := makeBatch(cfg, s.AlphasCumprod, data, idx, 5, empty)
	for i := range a.Noise {
		if a.Noise[i] != b.Noise[i] {
			t.Fatal("the same stream gave different noise")
		}
	}
}

// TestTextDrop checks the text-drop coin: its rate is about p, it is
// independent of the face drop, a dropped sample gets exactly the empty
// prompt's context (a kept one its own), and turning it on changes none of
// the other draws of the stream.
func TestTextDrop(t *testing.T) {
	cfg := testConfig(t)
	cfg.FaceDropProb = 0.1
	cfg.TextDropProb = 0.2
	s, err := cfg.schedule()
	if err != nil {
		t.Fatal(err)
	}
	data := NewSynthetic(cfg.Model, 8, 1)
	empty := data.EmptyContext()
	off := cfg
	off.TextDropProb = 0
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7}
	nc := cfg.Model.ContextLength * cfg.Model.TextWidth
	var n, text, face, both int
	for stream := range uint64(500) {
		b, err := makeBatch(cfg, s.AlphasCumprod, data, idx, stream, empty)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := makeBatch(off, s.AlphasCumprod, data, idx, stream, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Noise, ref.Noise) || !slices.Equal(b.Timesteps, ref.Timesteps) || !slices.Equal(b.Keep, ref.Keep) {
			t.Fatalf("stream %d: text drop changed the noise, timesteps or face drops", stream)
		}
		for i := range b.Size {
			n++
			ex, _ := data.Example(idx[i])
			got := b.Context[i*nc : (i+1)*nc]
			if b.KeepText[i] == 0 {
				text++
				if !slices.Equal(got, empty) {
					t.Fatalf("stream %d sample %d: dropped text but the context is not the empty prompt's", stream, i)
				}
				if b.Keep[i] == 0 {
					both++
				}
			} else if !slices.Equal(got, ex.Context) {
				t.Fatalf("stream %d sample %d: kept text but the context changed", stream, i)
			}
			if !slices.Equal(ref.Context[i*nc:(i+1)*nc], ex.Context) || ref.KeepText[i] != 1 {
				t.Fatalf("stream %d sample %d: text dropped with text_drop_prob 0", stream, i)
			}
			if b.Keep[i] == 0 {
				face++
			}
		}
	}
	tr, fr, br := float64(text)/float64(n), float64(face)/float64(n), float64(both)/float64(n)
	t.Logf("%d samples: text drop %.3f, face drop %.3f, both %.4f (independent: %.4f)", n, tr, fr, br, tr*fr)
	if math.Abs(tr-0.2) > 0.03 {
		t.Errorf("text drop rate %.3f, want about 0.2", tr)
	}
	if math.Abs(br-tr*fr) > 0.01 {
		t.Errorf("both dropped in %.4f of samples, want about %.4f (independent coins)", br, tr*fr)
	}

	// A dataset without the empty prompt cannot drop the text; a resume
	// must keep the probability.
	if _, err := New(cfg, noEmpty{data}, nil); err == nil || !strings.Contains(err.Error(), "empty prompt") {
		t.Errorf("text drop on a dataset without the empty prompt: %v", err)
	}
	cfg.CheckpointEvery = 1
	tr1, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr1.Step(); err != nil {
		t.Fatal(err)
	}
	off.CheckpointDir = cfg.CheckpointDir
	if _, err := Resume(off, data); err == nil || !strings.Contains(err.Error(), "text_drop_prob") {
		t.Errorf("resume with another text_drop_prob: %v", err)
	}
}

// noEmpty hides a dataset's EmptyContext.
type noEmpty struct{ d Dataset }

func (n noEmpty) Len() int                       { return n.d.Len() }
func (n noEmpty) Example(i int) (Example, error) { return n.d.Example(i) }

// TestLossWeightV: with loss weight "v", each example's term is its ε-MSE
// divided by ᾱ_t, so on one-example batches the two objectives differ by
// exactly that factor; the weight needs the v-skip output.
func TestLossWeightV(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 0
	data := NewSynthetic(cfg.Model, 8, 3)
	eps, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	vcfg := cfg
	vcfg.LossWeight = LossWeightV
	v, err := New(vcfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		b, err := eps.Batch([]int{i}, uint64(10+i))
		if err != nil {
			t.Fatal(err)
		}
		le, err := eps.EvalLoss(b, false)
		if err != nil {
			t.Fatal(err)
		}
		lv, err := v.EvalLoss(b, false)
		if err != nil {
			t.Fatal(err)
		}
		ab := float64(b.SqrtAB[0]) * float64(b.SqrtAB[0])
		if want := le / ab; math.Abs(lv-want) > 1e-4*want {
			t.Errorf("t=%g: v loss %g, want ε loss %g / ᾱ %g = %g", b.Timesteps[0], lv, le, ab, want)
		}
	}
	bad := cfg
	bad.LossWeight = LossWeightV
	bad.Model.Output = model.OutputEps
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "loss_weight") {
		t.Errorf("v weight with ε output: err %v, want a loss_weight error", err)
	}
	bad.LossWeight = "snr"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "loss_weight") {
		t.Errorf("unknown weight: err %v, want a loss_weight error", err)
	}
}
