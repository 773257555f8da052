package sdmodel_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
)

// tinyDir is one generated tiny model shared by the tests (read-only; tests
// that break a folder work on a copy).
var tinyDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "sdmodel-test")
	if err != nil {
		panic(err)
	}
	tinyDir = filepath.Join(d, "tiny")
	if err := sdmodel.Generate(tinyDir, sdmodel.TinyConfig()); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func TestGenerateLayout(t *testing.T) {
	m, err := sdmodel.Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[*onnx.ModelInfo]string{
		m.TextEncoder: "in [input_ids int32[batch,sequence]] out [last_hidden_state float32[batch,sequence,32] pooler_output float32[batch,32]]",
		m.UNet:        "in [sample float32[batch,4,height,width] timestep float32[batch] encoder_hidden_states float32[batch,sequence,32]] out [out_sample float32[batch,4,height,width]]",
		m.VAEDecoder:  "in [latent_sample float32[batch,4,height,width]] out [sample float32[batch,3,height_x8,width_x8]]",
		m.Projection:  "in [embedding float32[batch,128]] out [tokens float32[batch,3,32]]",
	}
	for info, w := range want {
		if got := fmt.Sprintf("in %v out %v", info.Inputs, info.Outputs); got != w {
			t.Errorf("%s:\n got %s\nwant %s", info.Path, got, w)
		}
		if info.Opset != onnx.Opset {
			t.Errorf("%s: opset %d", info.Path, info.Opset)
		}
	}
	if m.TimestepType != onnx.Float || m.InputIDsType != onnx.Int32 {
		t.Errorf("timestep %s, input_ids %s", m.TimestepType, m.InputIDsType)
	}
	mf := m.Manifest
	if mf.Embedding.Space != "faceapi-128" || mf.Embedding.Dim != 128 || mf.FaceTokens != 3 || mf.FaceTokenStart != 74 ||
		mf.TextWidth != 32 || mf.LatentChannels != 4 || mf.VAEScaleFactor != 8 || mf.LatentScale != 0.18215 ||
		mf.Guidance.W != 7.5 || mf.Guidance.C != 1 || mf.Guidance.A != 0 {
		t.Errorf("manifest %+v", mf)
	}
	s := m.Scheduler
	if s.BetaStart != 0.00085 || s.BetaEnd != 0.012 || s.BetaSchedule != "scaled_linear" || s.NumTrainTimesteps != 1000 ||
		s.StepsOffset != 1 || s.TimestepSpacing != "leading" || s.SetAlphaToOne || s.ClipSample || s.PredictionType != "epsilon" {
		t.Errorf("scheduler %+v", s)
	}
	// The small vocabulary: 512 byte symbols, the merges, then the start and
	// end tokens; prompts are padded with the end token.
	ids := m.Tokenizer.Tokenize("a photo of the cat", clip.WithPadToken(int32(mf.PadToken)))
	start := int32(mf.PadToken - 1)
	if len(ids) != 77 || ids[0] != start || ids[6] != int32(mf.PadToken) || ids[76] != int32(mf.PadToken) || ids[2] < 512 {
		t.Errorf("tokens %v (start %d, end/pad %d)", ids[:10], start, mf.PadToken)
	}
	// Deterministic: the same seed gives byte-identical files.
	again := filepath.Join(t.TempDir(), "again")
	if err := sdmodel.Generate(again, sdmodel.TinyConfig()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{sdmodel.UNetFile, sdmodel.TextEncoderFile} {
		a, _ := os.ReadFile(filepath.Join(tinyDir, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if string(a) != string(b) {
			t.Errorf("%s differs between two generations with one seed", f)
		}
	}
}

func randn(n int, seed float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(math.Sin(float64(i)*1.7 + seed))
	}
	return out
}

func finite(t *testing.T, name string, v []float32) {
	t.Helper()
	var sum float64
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("%s[%d] = %g", name, i, x)
		}
		sum += math.Abs(float64(x))
	}
	if sum == 0 {
		t.Fatalf("%s is all zeros", name)
	}
}

func load(t *testing.T, m *sdmodel.Model, file string) *ort.Session {
	t.Helper()
	s, err := ort.Load(m.Path(file), ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestComponentsRun runs all four components with batch 1 and 2, checks
// shapes, and that batch rows are computed independently (row 0 of a batch of
// two equals the batch-of-one result).
func TestComponentsRun(t *testing.T) {
	orttest.Require(t)
	runComponents(t, tinyDir)
}

func runComponents(t *testing.T, dir string) {
	m, err := sdmodel.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	D := int64(m.Manifest.TextWidth)
	te := load(t, m, sdmodel.TextEncoderFile)
	unet := load(t, m, sdmodel.UNetFile)
	vae := load(t, m, sdmodel.VAEDecoderFile)
	proj := load(t, m, sdmodel.ProjectionFile)

	prompts := []string{"a photo of a person", ""}
	var ids []int32
	for _, p := range prompts {
		ids = append(ids, m.Tokenizer.Tokenize(p, clip.WithPadToken(int32(m.Manifest.PadToken)))...)
	}
	const h, w = 4, 6
	for _, B := range []int64{1, 2} {
		t.Run(fmt.Sprintf("batch%d", B), func(t *testing.T) {
			out, err := te.Run(map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids[:B*77], B, 77)})
			if err != nil {
				t.Fatal(err)
			}
			ctx := out[sdmodel.OutLastHidden]
			wantShape(t, "last_hidden_state", ctx.Shape, B, 77, D)
			wantShape(t, "pooler_output", out[sdmodel.OutPooled].Shape, B, D)
			finite(t, "last_hidden_state", ctx.Float32())
			// pooler_output is the state at the end token.
			eot := 0
			for i, id := range ids[:77] {
				if id > ids[eot] {
					eot = i
				}
			}
			if got, want := out[sdmodel.OutPooled].Float32()[3], ctx.Float32()[eot*int(D)+3]; got != want {
				t.Errorf("pooler_output %g, want last_hidden_state at the end token %g", got, want)
			}

			emb := randn(int(B)*m.Manifest.Embedding.Dim, 1)
			out, err = proj.Run(map[string]ort.Tensor{sdmodel.InEmbedding: ort.F32(emb, B, int64(m.Manifest.Embedding.Dim))})
			if err != nil {
				t.Fatal(err)
			}
			wantShape(t, "tokens", out[sdmodel.OutFaceTokens].Shape, B, 3, D)
			finite(t, "tokens", out[sdmodel.OutFaceTokens].Float32())

			lat := randn(int(B)*4*h*w, 2)
			ts := make([]float32, B)
			for i := range ts {
				ts[i] = 981
			}
			out, err = unet.Run(map[string]ort.Tensor{
				sdmodel.InSample:   ort.F32(lat, B, 4, h, w),
				sdmodel.InTimestep: ort.F32(ts, B),
				sdmodel.InContext:  ctx,
			})
			if err != nil {
				t.Fatal(err)
			}
			eps := out[sdmodel.OutNoise]
			wantShape(t, "out_sample", eps.Shape, B, 4, h, w)
			finite(t, "out_sample", eps.Float32())
			// A [1] timestep is broadcast to the batch, as in the SD export.
			out1, err := unet.Run(map[string]ort.Tensor{
				sdmodel.InSample:   ort.F32(lat, B, 4, h, w),
				sdmodel.InTimestep: ort.F32([]float32{981}, 1),
				sdmodel.InContext:  ctx,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !same(out1[sdmodel.OutNoise].Float32(), eps.Float32()) {
				t.Error("timestep [1] and [batch] with equal values give different results")
			}

			out, err = vae.Run(map[string]ort.Tensor{sdmodel.InLatent: ort.F32(lat, B, 4, h, w)})
			if err != nil {
				t.Fatal(err)
			}
			wantShape(t, "sample", out[sdmodel.OutImage].Shape, B, 3, 8*h, 8*w)
			finite(t, "sample", out[sdmodel.OutImage].Float32())
		})
	}
}

func same(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			return false
		}
	}
	return true
}

func wantShape(t *testing.T, name string, got []int64, want ...int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s shape %v, want %v", name, got, want)
	}
}

// TestExternalDataModel generates a model whose weights live in side files
// and checks it validates and runs.
func TestExternalDataModel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ext")
	cfg := sdmodel.TinyConfig()
	cfg.ExternalDataThreshold = 4096
	if err := sdmodel.Generate(dir, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := sdmodel.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.UNet.ExternalFiles) != 1 || m.UNet.ExternalFiles[0] != "weights.pb" || m.UNet.ExternalBytes < 100000 {
		t.Fatalf("unet external data %v (%d bytes)", m.UNet.ExternalFiles, m.UNet.ExternalBytes)
	}
	orttest.Require(t)
	runComponents(t, dir)
}

// TestFullCLIPVocabulary writes the real CLIP vocabulary as the tokenizer and
// checks ids from the folder match ml/clip on the original file.
func TestFullCLIPVocabulary(t *testing.T) {
	shared, err := assets.SharedDir()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	bpe := filepath.Join(shared, "clip", "bpe_simple_vocab_16e6.txt.gz")
	if _, err := os.Stat(bpe); err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "clipvocab")
	cfg := sdmodel.TinyConfig()
	cfg.BPEPath = bpe
	if err := sdmodel.Generate(dir, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := sdmodel.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := clip.LoadBPE(bpe)
	if err != nil {
		t.Fatal(err)
	}
	p := "A photo of Ada Lovelace, smiling — in the style of an oil painting!"
	if got, want := fmt.Sprint(m.Tokenizer.Tokenize(p)), fmt.Sprint(ref.Tokenize(p)); got != want {
		t.Errorf("folder tokenizer %s\nwant %s", got, want)
	}
	if m.Manifest.PadToken != clip.EndToken {
		t.Errorf("pad token %d, want %d", m.Manifest.PadToken, clip.EndToken)
	}
	orttest.Require(t)
	te := load(t, m, sdmodel.TextEncoderFile)
	ids := m.Tokenizer.Tokenize(p, clip.WithPadToken(clip.EndToken))
	out, err := te.Run(map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(ids, 1, 77)})
	if err != nil {
		t.Fatal(err)
	}
	finite(t, "last_hidden_state", out[sdmodel.OutLastHidden].Float32())
}

// copyDir copies the tiny model so a test can break it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "model")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func editManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, sdmodel.ManifestFile)
	raw, _ := os.ReadFile(p)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	os.WriteFile(p, raw, 0o644)
}

// replaceModel overwrites a component with a one-op graph whose interface
// differs from the SD layout.
func replaceModel(t *testing.T, dir, file string, build func(g *onnx.Graph)) {
	t.Helper()
	g := onnx.NewGraph("broken")
	build(g)
	if err := g.Save(filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

func TestBadFolders(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(dir string)
		want    []string
	}{
		{"missing unet", func(d string) { os.Remove(filepath.Join(d, sdmodel.UNetFile)) }, []string{"missing unet/model.onnx"}},
		{"missing merges", func(d string) { os.Remove(filepath.Join(d, sdmodel.MergesFile)) }, []string{"missing tokenizer/merges.txt"}},
		{"wrong unet input name", func(d string) {
			replaceModel(t, d, sdmodel.UNetFile, func(g *onnx.Graph) {
				x := g.Input("sample", onnx.Float, "batch", 4, "h", "w")
				g.Input("timesteps", onnx.Float, "batch")
				g.Input("encoder_hidden_states", onnx.Float, "batch", 77, 32)
				g.Output("out_sample", g.Mul(x, g.Scalar(1)), "batch", 4, "h", "w")
			})
		}, []string{"unet/model.onnx", `unexpected input "timesteps"`, `"timestep"`}},
		{"wrong text encoder output", func(d string) {
			replaceModel(t, d, sdmodel.TextEncoderFile, func(g *onnx.Graph) {
				x := g.Input("input_ids", onnx.Int32, "batch", 77)
				g.Output("hidden_states", g.Cast(g.Unsqueeze(x, 2), onnx.Float), "batch", 77, 1)
			})
		}, []string{"text_encoder/model.onnx", `no output named "last_hidden_state"`, "hidden_states"}},
		{"wrong input_ids type", func(d string) {
			replaceModel(t, d, sdmodel.TextEncoderFile, func(g *onnx.Graph) {
				x := g.Input("input_ids", onnx.Float, "batch", 77)
				g.Output("last_hidden_state", g.Unsqueeze(x, 2), "batch", 77, 1)
			})
		}, []string{"text_encoder/model.onnx", `input "input_ids" is float32, want int32 or int64`}},
		{"mismatched embedding dim", func(d string) {
			editManifest(t, d, func(m map[string]any) { m["embedding"].(map[string]any)["dim"] = 512 })
		}, []string{"face0/projection.onnx", "takes 128-d embeddings", "embedding.dim is 512"}},
		{"mismatched text width", func(d string) {
			editManifest(t, d, func(m map[string]any) { m["text_width"] = 768 })
		}, []string{"text_encoder/model.onnx", "last_hidden_state", "size 32 on axis 2, want 768"}},
		{"corrupt vae", func(d string) {
			p := filepath.Join(d, sdmodel.VAEDecoderFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/3], 0o644)
		}, []string{"vae_decoder/model.onnx", "truncated or corrupt"}},
		{"garbage projection", func(d string) {
			os.WriteFile(filepath.Join(d, sdmodel.ProjectionFile), []byte("<html>not found</html>"), 0o644)
		}, []string{"face0/projection.onnx", "not"}},
		{"manifest not JSON", func(d string) {
			os.WriteFile(filepath.Join(d, sdmodel.ManifestFile), []byte("{"), 0o644)
		}, []string{"face0.json", "not a valid manifest"}},
		{"manifest with 4 face tokens", func(d string) {
			editManifest(t, d, func(m map[string]any) { m["face_tokens"] = 4 })
		}, []string{"face0.json", "face_tokens is 4"}},
		{"scheduler without betas", func(d string) {
			os.WriteFile(filepath.Join(d, sdmodel.SchedulerFile), []byte(`{"num_train_timesteps": 1000}`), 0o644)
		}, []string{"scheduler_config.json", "beta_start"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, tinyDir)
			c.breakIt(dir)
			err := sdmodel.Validate(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestOrtLoadBrokenFolder checks the same problems surface clearly when a
// component is loaded straight into onnxruntime (without Validate first).
func TestOrtLoadBrokenFolder(t *testing.T) {
	orttest.Require(t)
	dir := copyDir(t, tinyDir)
	p := filepath.Join(dir, sdmodel.UNetFile)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:len(b)-100], 0o644)
	_, err := ort.Load(p, ort.Options{})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v does not name %s", err, p)
	}
}

func TestDiscover(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"zeta", "alpha"} {
		os.MkdirAll(filepath.Join(root, name), 0o755)
		os.WriteFile(filepath.Join(root, name, sdmodel.ManifestFile), []byte("{}"), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "not-a-model"), 0o755)
	os.WriteFile(filepath.Join(root, "stray.json"), nil, 0o644)
	got, err := sdmodel.Discover(root)
	if err != nil || fmt.Sprint(got) != "[alpha zeta]" {
		t.Errorf("Discover = %v, %v", got, err)
	}
	if got, err := sdmodel.Discover(filepath.Join(root, "none")); err != nil || len(got) != 0 {
		t.Errorf("missing root: %v, %v", got, err)
	}
}
