package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/clip"
	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/model"
)

// tinyDataset writes 8 identities × 2 images at 32 px, plus three bad
// entries: a record for a missing file, a line that is not JSON, and a PNG
// that does not decode.
func tinyDataset(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "synth")
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 1, Train: 8, HeldOut: -1, PerIdentity: 2, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	train := filepath.Join(dir, "train")
	f, err := os.OpenFile(filepath.Join(train, data.MetadataFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"file":"missing.png","caption":"a photo"}` + "\n" + `{"file": broken` + "\n")
	f.Close()
	if err := os.WriteFile(filepath.Join(train, synthfaces.FileName(7, 1)), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyModel() model.Config {
	m := model.Tiny()
	m.Blocks, m.PatchSize = 1, 1 // 64 tokens of 48 values: a patch must fit the width
	if v := os.Getenv("FACE0_TEST_MODEL"); v != "" {
		fmt.Sscanf(v, "%d,%d,%d", &m.Width, &m.Blocks, &m.PatchSize)
	}
	return m
}

func TestEndToEnd(t *testing.T) {
	orttest.Require(t)
	ds := tinyDataset(t)
	root := t.TempDir()
	out := filepath.Join(root, "models", "trained")
	var logs []string
	var plots int
	var last Progress
	res, err := Run(context.Background(), Options{
		Dataset: ds, Out: out, Steps: 60, Batch: 8, LR: 3e-3, CheckpointEvery: 50, Model: tinyModel(),
		Logf:       func(f string, a ...any) { logs = append(logs, strings.TrimSpace(sprintf(f, a...))) },
		OnPlot:     func(image.Image) { plots++ },
		OnProgress: func(p Progress) { last = p },
	})
	if err != nil {
		t.Fatalf("run: %v\nlogs:\n%s", err, strings.Join(logs, "\n"))
	}
	t.Logf("prep %.2fs for %d images (%.1f ms/image); %.3f s/step; fixed-batch loss %.4f -> %.4f",
		res.PrepSeconds, res.Prepared.Count+len(res.Prepared.Problems), 1000*res.PrepSeconds/float64(res.Prepared.Count+len(res.Prepared.Problems)),
		res.StepSeconds, res.EvalStart, res.EvalEnd)

	// Bad files are reported and skipped.
	if res.Prepared.Count != 15 || len(res.Prepared.Problems) != 3 {
		t.Errorf("prepared %d examples with problems %v; want 15 and 3", res.Prepared.Count, res.Prepared.Problems)
	}
	for _, want := range []string{"missing.png", "line 18", synthfaces.FileName(7, 1)} {
		found := false
		for _, p := range res.Prepared.Problems {
			found = found || strings.Contains(p.String(), want)
		}
		if !found {
			t.Errorf("no problem mentions %q: %v", want, res.Prepared.Problems)
		}
	}
	// --face auto on a synthfaces dataset: the identity embedder, a space
	// EmbedFace gives, so the default workflow can drive the model.
	if res.Prepared.Space != "synthfaces-id-64" || res.Prepared.Dim != 64 || res.Prepared.FaceSource != data.FaceSynthfaces {
		t.Errorf("embedding %s %d-d from %s", res.Prepared.Space, res.Prepared.Dim, res.Prepared.FaceSource)
	}

	// The loss falls.
	if !(res.EvalEnd < 0.8*res.EvalStart) {
		t.Errorf("fixed-batch loss %.4f -> %.4f: want a fall of at least 20%%", res.EvalStart, res.EvalEnd)
	}
	if len(res.Losses) != 60 || mean(res.Losses[50:]) >= mean(res.Losses[:10]) {
		t.Errorf("training loss did not fall: first 10 %.4f, last 10 %.4f (%d losses)", mean(res.Losses[:10]), mean(res.Losses[50:]), len(res.Losses))
	}
	if plots < 4 || last.Phase != "export" {
		t.Errorf("%d plots, last progress %+v", plots, last)
	}

	// The folder checks out and says what it is.
	m, err := sdmodel.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	man := m.Manifest
	if man.LatentChannels != 48 || man.VAEScaleFactor != 4 || man.SampleSize != 32 || man.Embedding.Space != "synthfaces-id-64" ||
		man.Embedding.Dim != 64 || man.TextWidth != 32 || man.FaceTokens != 3 || man.FaceTokenStart != 74 || man.LatentScale <= 0 {
		t.Errorf("manifest %+v", man)
	}
	mix, err := f0.LoadMixture(filepath.Join(out, MixtureFile))
	if err != nil || mix.Dim != 64 {
		t.Fatalf("mixture: %v", err)
	}

	// Every component runs in onnxruntime with the right shapes.
	run := func(file string, in map[string]ort.Tensor, name string, shape ...int64) []float32 {
		t.Helper()
		return runONNX(t, m, file, in, name, shape...)
	}
	ids := m.Tokenizer.Tokenize("a photo portrait of a smiling person", clip.WithPadToken(int32(man.PadToken)))
	hidden := run(sdmodel.TextEncoderFile, map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)}, sdmodel.OutLastHidden, 1, 77, 32)
	emb, _ := f0.RandomEmbedding(mix, 64, 1)
	run(sdmodel.ProjectionFile, map[string]ort.Tensor{sdmodel.InEmbedding: ort.F32(emb, 1, 64)}, sdmodel.OutFaceTokens, 1, 3, 32)
	ctx2 := append(append([]float32(nil), hidden...), hidden...)
	run(sdmodel.UNetFile, map[string]ort.Tensor{
		sdmodel.InSample:   ort.F32(make([]float32, 2*48*64), 2, 48, 8, 8),
		sdmodel.InTimestep: ort.F32([]float32{999, 10}, 2),
		sdmodel.InContext:  ort.F32(ctx2, 2, 77, 32),
	}, sdmodel.OutNoise, 2, 48, 8, 8)

	// The decoder is the exact inverse of the latent.
	prep, err := data.Load(filepath.Join(res.RunDir, PreparedDir))
	if err != nil {
		t.Fatal(err)
	}
	raw := prep.RawLatent(0)
	img := run(sdmodel.VAEDecoderFile, map[string]ort.Tensor{sdmodel.InLatent: ort.F32(raw, 1, 48, 8, 8)}, sdmodel.OutImage, 1, 3, 32, 32)
	orig := prep.Latent().Decode(raw)
	for y := range 32 {
		for x := range 32 {
			for c := range 3 {
				want := float32(orig.Pix[y*orig.Stride+x*4+c])/127.5 - 1
				if d := img[c*1024+y*32+x] - want; d > 1e-6 || d < -1e-6 {
					t.Fatalf("decoder pixel (%d,%d,%d) = %g, want %g", x, y, c, img[c*1024+y*32+x], want)
				}
			}
		}
	}
	// The frozen text encoder of the model is the one the captions were encoded with.
	ex, _ := prep.Example(0)
	caption, err := os.ReadFile(filepath.Join(ds, "train", strings.TrimSuffix(prep.Info.Files[0], ".png")+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids = m.Tokenizer.Tokenize(string(caption), clip.WithPadToken(int32(man.PadToken)))
	h0 := run(sdmodel.TextEncoderFile, map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)}, sdmodel.OutLastHidden, 1, 77, 32)
	for i := range h0 {
		if d := h0[i] - ex.Context[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("context value %d: model's encoder gives %g, the prepared one %g", i, h0[i], ex.Context[i])
		}
	}
	// ... and the empty prompt's, which text drop trains on, is the
	// context the sampler's unconditional branches will give.
	ids = m.Tokenizer.Tokenize("", clip.WithPadToken(int32(man.PadToken)))
	he := run(sdmodel.TextEncoderFile, map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)}, sdmodel.OutLastHidden, 1, 77, 32)
	empty := prep.EmptyContext()
	if len(empty) != len(he) {
		t.Fatalf("empty-prompt context has %d values, want %d", len(empty), len(he))
	}
	for i := range he {
		if d := he[i] - empty[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("empty context value %d: model's encoder gives %g, the prepared one %g", i, he[i], empty[i])
		}
	}
	// The exported UNet and projection denoise the training data in
	// onnxruntime as the trained model did: at t = 500 (ᾱ ≈ 0.28) the
	// predicted noise is much nearer the true one than a zero prediction.
	sc, err := sched.NewSchedule(sched.Config{NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: "scaled_linear"})
	if err != nil {
		t.Fatal(err)
	}
	g := f0.NewGaussian(5, 1)
	var mse, zero float64
	for i := range prep.Len() {
		ex, _ := prep.Example(i)
		tok := run(sdmodel.ProjectionFile, map[string]ort.Tensor{sdmodel.InEmbedding: ort.F32(ex.Embedding, 1, 64)}, sdmodel.OutFaceTokens, 1, 3, 32)
		c := append([]float32(nil), ex.Context...)
		copy(c[74*32:], tok)
		eps := make([]float32, len(ex.Latent))
		g.Fill(eps)
		ab := sc.AlphasCumprod[500]
		xt := make([]float32, len(eps))
		for j := range xt {
			xt[j] = float32(math.Sqrt(ab))*ex.Latent[j] + float32(math.Sqrt(1-ab))*eps[j]
		}
		pred := run(sdmodel.UNetFile, map[string]ort.Tensor{sdmodel.InSample: ort.F32(xt, 1, 48, 8, 8), sdmodel.InTimestep: ort.F32([]float32{500}, 1),
			sdmodel.InContext: ort.F32(c, 1, 77, 32)}, sdmodel.OutNoise, 1, 48, 8, 8)
		for j := range pred {
			mse += float64((pred[j] - eps[j]) * (pred[j] - eps[j]))
			zero += float64(eps[j] * eps[j])
		}
	}
	t.Logf("exported model at t=500: noise MSE %.4f, zero prediction %.4f", mse/zero, 1.0)
	if mse > 0.5*zero {
		t.Errorf("the exported model does not denoise: MSE %.4f of the zero prediction's", mse/zero)
	}
	var prov Provenance
	b, _ := os.ReadFile(filepath.Join(out, TrainingFile))
	if err := json.Unmarshal(b, &prov); err != nil || prov.Steps != 60 || prov.Examples != 15 {
		t.Errorf("training.json: %v %+v", err, prov)
	}
}

func TestCancelLeavesResumableCheckpoint(t *testing.T) {
	orttest.Require(t)
	ds := tinyDataset(t)
	out := filepath.Join(t.TempDir(), "m")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{Dataset: ds, Out: out, Steps: 12, Batch: 4, LR: 1e-3, CheckpointEvery: 100, Model: tinyModel(), Resume: true,
		OnProgress: func(p Progress) {
			if p.Phase == "train" && p.Done == 5 {
				cancel()
			}
		}}
	_, err := Run(ctx, opts)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	ck, err := training.LatestCheckpoint(filepath.Join(DefaultRunDir(out), CheckpointsDir))
	if err != nil || !strings.HasSuffix(ck, "checkpoint-000000005") {
		t.Fatalf("checkpoint after cancel: %q %v", ck, err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a cancelled run wrote the model folder: %v", err)
	}
	opts.OnProgress = nil
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 12 || len(res.Losses) != 12 {
		t.Errorf("resumed run: %d steps, %d losses", res.Steps, len(res.Losses))
	}
	if err := sdmodel.Validate(out); err != nil {
		t.Fatal(err)
	}
	// A straight run gives the same losses: resume is exact.
	straight := opts
	straight.Out = filepath.Join(t.TempDir(), "m2")
	straight.Resume = false
	res2, err := Run(context.Background(), straight)
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Losses {
		if res.Losses[i] != res2.Losses[i] {
			t.Fatalf("step %d: resumed loss %v, straight %v", i+1, res.Losses[i], res2.Losses[i])
		}
	}
}

// runONNX runs one component of model m in onnxruntime and checks the
// shape of its output name.
func runONNX(t *testing.T, m *sdmodel.Model, file string, in map[string]ort.Tensor, name string, shape ...int64) []float32 {
	t.Helper()
	s, err := ort.Load(m.Path(file), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(in)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	got := res[name]
	if !equal(got.Shape, shape) {
		t.Fatalf("%s: %s has shape %v, want %v", file, name, got.Shape, shape)
	}
	return got.Float32()
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
