package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/textclip"
	"github.com/face0/face0/training/textenc"
)

// TestRunFromBase fine-tunes a (random, tiny) Stable Diffusion base as the
// paper does: the dataset goes through the base's VAE and text encoder, its
// UNet trains with the projection on the uniform ε objective, and the
// exported folder holds the base's text encoder, tokenizer and VAE decoder
// beside the trained UNet.
func TestRunFromBase(t *testing.T) {
	orttest.Require(t)
	baseDir := filepath.Join(t.TempDir(), "sd-tiny")
	if err := base.WriteTiny(baseDir, 9, nil); err != nil {
		t.Fatal(err)
	}
	ds := tinyDataset(t)
	out := filepath.Join(t.TempDir(), "models", "tuned")
	var logs []string
	res, err := Run(context.Background(), Options{
		Dataset: ds, Out: out, Base: baseDir, Steps: 16, Batch: 4, LR: 2e-3, CheckpointEvery: 100,
		Logf: func(f string, a ...any) { logs = append(logs, strings.TrimSpace(sprintf(f, a...))) },
	})
	if err != nil {
		t.Fatalf("run: %v\nlogs:\n%s", err, strings.Join(logs, "\n"))
	}
	t.Logf("prep %.2fs; %.3f s/step; fixed-batch loss %.4f -> %.4f", res.PrepSeconds, res.StepSeconds, res.EvalStart, res.EvalEnd)
	p := res.Prepared
	if p.Base != baseDir || p.Vocab != "base" || p.ImageSize != 64 || p.Factor != 8 || p.LatentChannels != 4 || p.LatentSize != 8 || p.LatentScale != 0.18215 || p.Count != 15 {
		t.Fatalf("prepared %+v", p)
	}
	if !(res.EvalEnd < res.EvalStart) {
		t.Errorf("fixed-batch loss %.4f -> %.4f: the UNet did not learn", res.EvalStart, res.EvalEnd)
	}
	var prov Provenance
	b, _ := os.ReadFile(filepath.Join(out, TrainingFile))
	if err := json.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if prov.Training.UNet == nil || prov.Training.LossWeight != training.LossWeightEps || prov.Training.TextDropProb != 0 || prov.Training.Model.ProjHidden != 768 ||
		!strings.Contains(prov.TextEncoder, "base model") || !strings.Contains(prov.Latent, "VAE") {
		t.Errorf("training.json: %+v", prov)
	}

	bm, err := base.Open(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	te := bm.Text
	m, err := sdmodel.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	man := m.Manifest
	if man.LatentChannels != 4 || man.VAEScaleFactor != 8 || man.SampleSize != 64 || man.LatentScale != 0.18215 || man.TextWidth != 32 || man.PadToken != te.VocabSize-1 {
		t.Errorf("manifest %+v", man)
	}
	run := func(file string, in map[string]ort.Tensor, name string, shape ...int64) []float32 {
		t.Helper()
		return runONNX(t, m, file, in, name, shape...)
	}
	// The model's text encoder is the base's: the exported graph agrees
	// with textenc's forward on the base weights.
	tw, err := bm.TextWeights()
	if err != nil {
		t.Fatal(err)
	}
	be, err := training.Backend()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := textenc.NewEncoder(be, te, tw)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Finalize()
	ids := m.Tokenizer.Tokenize("a pencil sketch of a smiling person", clip.WithPadToken(int32(man.PadToken)))
	want, _, err := enc.Encode([][]int32{ids})
	if err != nil {
		t.Fatal(err)
	}
	got := run(sdmodel.TextEncoderFile, map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)}, sdmodel.OutLastHidden, 1, 77, 32)
	for i := range got {
		if d := got[i] - want[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("text encoder value %d: exported %g, the base's %g", i, got[i], want[i])
		}
	}
	// The prepared latents are the base VAE's; the decoder goes back to 64 px.
	prep, err := data.Load(filepath.Join(res.RunDir, PreparedDir))
	if err != nil {
		t.Fatal(err)
	}
	run(sdmodel.VAEDecoderFile, map[string]ort.Tensor{sdmodel.InLatent: ort.F32(prep.RawLatent(0), 1, 4, 8, 8)}, sdmodel.OutImage, 1, 3, 64, 64)
	run(sdmodel.UNetFile, map[string]ort.Tensor{
		sdmodel.InSample:   ort.F32(make([]float32, 2*4*64), 2, 4, 8, 8),
		sdmodel.InTimestep: ort.F32([]float32{999, 10}, 2),
		sdmodel.InContext:  ort.F32(append(append([]float32(nil), got...), got...), 2, 77, 32),
	}, sdmodel.OutNoise, 2, 4, 8, 8)

	// Text pretraining is refused with a base, and a folder that is not one is named.
	_, err = Run(context.Background(), Options{Dataset: ds, Out: out + "2", Base: baseDir, Steps: 1,
		Prep: data.Options{TextPretrain: textclipSteps(5)}})
	if err == nil || !strings.Contains(err.Error(), "pretrained already") {
		t.Errorf("text pretraining with a base: error %v", err)
	}
	_, err = Run(context.Background(), Options{Dataset: ds, Out: out + "3", Base: filepath.Join(t.TempDir(), "nothing"), Steps: 1})
	if err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("a base folder that is not one: error %v", err)
	}
}

func textclipSteps(n int) textclip.Options { return textclip.Options{Steps: n} }

// TestRunFromImportedBase fine-tunes a folder `face0 models import` wrote
// from a single-file checkpoint, and a single file directly: both are
// bases, and the exported model samples (every component runs).
func TestRunFromImportedBase(t *testing.T) {
	orttest.Require(t)
	root := t.TempDir()
	file := filepath.Join(root, "tiny.safetensors")
	if err := base.WriteCheckpoint(file, base.TinyCheckpointArch(), 3, base.WriteCheckpointOptions{FP16: true, EMA: true}); err != nil {
		t.Fatal(err)
	}
	imported := filepath.Join(root, "models", "imported")
	if _, err := base.Import(file, imported, base.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ds := tinyDataset(t)
	for _, b := range []string{imported, file} {
		out := filepath.Join(root, "models", "tuned-"+filepath.Base(b))
		res, err := Run(context.Background(), Options{Dataset: ds, Out: out, Base: b, Steps: 2, Batch: 2, CheckpointEvery: 100})
		if err != nil {
			t.Fatalf("base %s: %v", b, err)
		}
		if res.Prepared.Base != b || res.Prepared.TextWidth != 32 {
			t.Errorf("prepared %+v", res.Prepared)
		}
		m, err := sdmodel.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Manifest.HasFace() || m.Manifest.PadToken != 49407 {
			t.Errorf("manifest %+v", m.Manifest)
		}
		ids := m.Tokenizer.Tokenize("a photo", clip.WithPadToken(int32(m.Manifest.PadToken)))
		hidden := runONNX(t, m, sdmodel.TextEncoderFile, map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)}, sdmodel.OutLastHidden, 1, 77, 32)
		runONNX(t, m, sdmodel.UNetFile, map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(make([]float32, 4*64), 1, 4, 8, 8),
			sdmodel.InTimestep: ort.F32([]float32{500}, 1),
			sdmodel.InContext:  ort.F32(hidden, 1, 77, 32),
		}, sdmodel.OutNoise, 1, 4, 8, 8)
	}
}
