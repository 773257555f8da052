package base

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers/layerstest"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// writeCheckpoint writes a tiny single-file checkpoint into a temp folder.
func writeCheckpoint(t *testing.T, o WriteCheckpointOptions) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := WriteCheckpoint(p, TinyCheckpointArch(), 11, o); err != nil {
		t.Fatal(err)
	}
	return p
}

// near fails unless got is want, exactly or (fp16) to binary16 rounding.
func near(t *testing.T, what string, got, want model.Weights, fp16 bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for n, w := range want {
		g := got[n]
		if g == nil || !slices.Equal(g.Shape, w.Shape) {
			t.Fatalf("%s: %s is %v, want shape %v", what, n, g, w.Shape)
		}
		for i := range w.Data {
			tol := 0.0
			if fp16 {
				tol = 1e-3 * (1 + math.Abs(float64(w.Data[i])))
			}
			if math.Abs(float64(g.Data[i]-w.Data[i])) > tol {
				t.Fatalf("%s: %s[%d] = %g, want %g", what, n, i, g.Data[i], w.Data[i])
			}
		}
	}
}

// TestImportCheckpoint imports written single-file checkpoints of every
// layout variant and reads the folder back as a base: each network's
// weights are the file's, the EMA copy is the one taken when present.
func TestImportCheckpoint(t *testing.T) {
	arch := TinyCheckpointArch()
	cases := []struct {
		name     string
		o        WriteCheckpointOptions
		imp      ImportOptions
		unetSeed uint64
		weights  string
	}{
		{"fp32", WriteCheckpointOptions{}, ImportOptions{}, SeedUNet, "plain"},
		{"fp16 file", WriteCheckpointOptions{FP16: true}, ImportOptions{}, SeedUNet, "plain"},
		{"EMA, EMA taken", WriteCheckpointOptions{EMA: true}, ImportOptions{}, SeedEMA, "ema"},
		{"EMA, plain asked", WriteCheckpointOptions{EMA: true}, ImportOptions{EMA: ckpt.EMAOff}, SeedUNet, "plain"},
		{"old text names", WriteCheckpointOptions{OldTextNames: true}, ImportOptions{}, SeedUNet, "plain"},
		{"fp16 UNet export", WriteCheckpointOptions{EMA: true}, ImportOptions{FP16: true, Name: "half"}, SeedEMA, "ema"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := writeCheckpoint(t, tc.o)
			dst := filepath.Join(t.TempDir(), "models", "imported")
			info, err := Import(src, dst, tc.imp)
			if err != nil {
				t.Fatal(err)
			}
			if info.UNetWeights != tc.weights || info.Kind != KindCheckpoint || info.Ignored == 0 {
				t.Errorf("import info %+v", info)
			}
			m, err := sdmodel.Load(dst)
			if err != nil {
				t.Fatal(err)
			}
			man := m.Manifest
			if man.HasFace() || man.Projection != sdmodel.ProjectionUntrained || man.TextWidth != 32 || man.PadToken != 49407 || man.LatentScale != 0.18215 || m.Projection != nil {
				t.Errorf("manifest %+v", man)
			}
			if want := tc.imp.Name; want != "" && man.Name != want {
				t.Errorf("name %q, want %q", man.Name, want)
			}
			if _, err := os.Stat(filepath.Join(dst, filepath.FromSlash(sdmodel.ProjectionFile))); !os.IsNotExist(err) {
				t.Error("an imported model has no projection file")
			}
			// The folder is a base: the same weights come back.
			bm, err := Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			if bm.Kind != KindModel || !bm.HasScheduler {
				t.Errorf("reopened as %q", bm.Kind)
			}
			u, err := bm.RawUNetWeights()
			if err != nil {
				t.Fatal(err)
			}
			near(t, "UNet", u, sd.NewWeights(arch.UNet, 11+tc.unetSeed), tc.o.FP16 || tc.imp.FP16)
			v, err := bm.VAEWeights()
			if err != nil {
				t.Fatal(err)
			}
			near(t, "VAE", v, vae.NewWeights(arch.VAE, 11+SeedVAE), tc.o.FP16)
			tw, err := bm.TextWeights()
			if err != nil {
				t.Fatal(err)
			}
			near(t, "text encoder", tw, textenc.NewWeights(arch.Text, 11+SeedText), tc.o.FP16)
			if ids := bm.Tokenizer.Encode("a photo of a cat"); !slices.Equal(ids, []int{320, 1125, 539, 320, 2368}) {
				t.Errorf("tokenizer: %v", ids)
			}
		})
	}
}

// TestOpenCheckpointAsBase: a single file is a base by itself, without an
// import, and the dataset key's files are the file.
func TestOpenCheckpointAsBase(t *testing.T) {
	src := writeCheckpoint(t, WriteCheckpointOptions{FP16: true, EMA: true})
	bm, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	if bm.Kind != KindCheckpoint || bm.EndToken != 49407 || !slices.Equal(bm.Files(), []string{src}) || bm.UNet.LayersPerBlock != 1 {
		t.Fatalf("opened %+v", bm)
	}
	u, err := bm.UNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u[model.DenoiserPrefix+"conv_in.weight"]; !ok {
		t.Error("UNetWeights carry the trainer's prefix")
	}
	dir := t.TempDir()
	if err := bm.WriteTokenizer(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(TokenizerVocab))); err != nil {
		t.Error(err)
	}
}

// TestImportDiffusers imports a diffusers folder.
func TestImportDiffusers(t *testing.T) {
	src := tinyBase(t, nil)
	dst := filepath.Join(t.TempDir(), "m")
	info, err := Import(src, dst, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindDiffusers {
		t.Errorf("kind %q", info.Kind)
	}
	bm, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	u, err := bm.RawUNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	want, err := orig.RawUNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	near(t, "UNet", u, want, false)
	// dst exists now: a second import refuses to overwrite it.
	if _, err := Import(src, dst, ImportOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("import over an existing folder: %v", err)
	}
}

// TestImportRefuses: other kinds of file are refused naming what they
// are; a checkpoint with a missing, an extra and a mis-shaped tensor names
// each of them, by checkpoint key and diffusers name; nothing is left.
func TestImportRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ts map[string]safetensors.Tensor) string {
		p := filepath.Join(dir, name)
		if err := safetensors.Write(p, ts); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := safetensors.FromFloat32([]int{2}, []float32{1, 2})
	sdxl := write("sdxl.safetensors", map[string]safetensors.Tensor{"conditioner.embedders.1.model.ln_final.weight": one, "model.diffusion_model.label_emb.0.0.weight": one})
	sd2 := write("sd2.safetensors", map[string]safetensors.Tensor{"cond_stage_model.model.ln_final.weight": one, "model.diffusion_model.out.2.bias": one})
	lora := write("lora.safetensors", map[string]safetensors.Tensor{"lora_unet_mid_block_attentions_0_proj_out.lora_up.weight": one})
	for _, tc := range []struct {
		path string
		want string
	}{{sdxl, "Stable Diffusion XL"}, {sd2, "Stable Diffusion 2.x"}, {lora, "LoRA"}} {
		out := filepath.Join(dir, "out")
		_, err := Import(tc.path, out, ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", filepath.Base(tc.path), err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: a refused import left %s", filepath.Base(tc.path), out)
		}
	}

	// A tiny checkpoint, rewritten with one tensor dropped, one extra and one mis-shaped.
	src := writeCheckpoint(t, WriteCheckpointOptions{})
	r, err := safetensors.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]safetensors.Tensor{}
	for _, n := range r.Names() {
		x, err := r.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		ts[n] = x
	}
	meta := r.Metadata()
	r.Close()
	delete(ts, "model.diffusion_model.middle_block.1.proj_in.weight")
	ts["first_stage_model.decoder.up.0.block.3.conv1.weight"] = safetensors.FromFloat32([]int{1}, []float32{0})
	ts["cond_stage_model.transformer.text_model.final_layer_norm.bias"] = safetensors.FromFloat32([]int{3}, []float32{0, 0, 0})
	bad := filepath.Join(dir, "bad.safetensors")
	if err := safetensors.Write(bad, ts, safetensors.WithMetadata(meta)); err != nil {
		t.Fatal(err)
	}
	_, err = Import(bad, filepath.Join(dir, "out"), ImportOptions{})
	for _, want := range []string{
		"model.diffusion_model.middle_block.1.proj_in.weight (mid_block.attentions.0.proj_in.weight)",
		"first_stage_model.decoder.up.0.block.3.conv1.weight (decoder.up_blocks.3.resnets.3.conv1.weight)",
		"cond_stage_model.transformer.text_model.final_layer_norm.bias (text_model.final_layer_norm.bias) is [3], want [32]",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a damaged checkpoint: the error does not name %q: %v", want, err)
		}
	}
}

// TestImportParity: the imported UNet in onnxruntime predicts what the
// GoMLX UNet predicts on the checkpoint's own weights (read straight from
// the file), for the float32 and the float16 export.
func TestImportParity(t *testing.T) {
	orttest.Require(t)
	src := writeCheckpoint(t, WriteCheckpointOptions{FP16: true, EMA: true})
	bm, err := OpenCheckpoint(src, CheckpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := bm.RawUNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	c := bm.UNet
	const B, S, L = 2, 16, 77
	sample := layerstest.Randn(B*4*S*S, 1, 1)
	ts := []float32{981, 21}
	ctx := layerstest.Randn(B*L*c.CrossAttentionDim, 2, 1)
	want, err := sd.Predict(layerstest.Backend(t), c, w, sample, B, S, S, ts, ctx, L, sd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, half := range []bool{false, true} {
		dst := filepath.Join(t.TempDir(), "m")
		if _, err := Import(src, dst, ImportOptions{FP16: half}); err != nil {
			t.Fatal(err)
		}
		s, err := ort.Load(filepath.Join(dst, filepath.FromSlash(sdmodel.UNetFile)), ort.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Run(map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(sample, B, 4, S, S),
			sdmodel.InTimestep: ort.F32(ts, B),
			sdmodel.InContext:  ort.F32(ctx, B, L, int64(c.CrossAttentionDim)),
		})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		tol := 1e-4
		if half {
			tol = 1e-2
		}
		layerstest.Compare(t, map[bool]string{false: "float32", true: "float16"}[half]+" import vs GoMLX on the checkpoint's weights", out[sdmodel.OutNoise].Float32(), want, tol)
	}
}

// TestAttachProjection: a projection trained adapter-only on the imported
// folder attaches; one trained jointly, or on another base, or without a
// record, is refused unless forced.
func TestAttachProjection(t *testing.T) {
	root := t.TempDir()
	imported := filepath.Join(root, "imported")
	if _, err := Import(writeCheckpoint(t, WriteCheckpointOptions{}), imported, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	trained := func(name string, prov map[string]any) string {
		dir := filepath.Join(root, name)
		if err := sdmodel.Generate(dir, sdmodel.TinyConfig()); err != nil {
			t.Fatal(err)
		}
		if prov != nil {
			b, _ := json.Marshal(prov)
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(trainingFile)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	prov := func(adapterOnly bool, base string) map[string]any {
		return map[string]any{"training": map[string]any{"adapter_only": adapterOnly}, "prepared": map[string]any{"base": base}}
	}
	for _, tc := range []struct {
		name, from, want string
	}{
		{"joint", trained("joint", prov(false, imported)), "jointly with a fine-tuned UNet"},
		{"other base", trained("other", prov(true, filepath.Join(root, "elsewhere"))), "not on " + imported},
		{"no record", trained("norecord", nil), "has no face0/training.json"},
	} {
		if err := AttachProjection(imported, tc.from, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if m, _ := sdmodel.Load(imported); m.Manifest.HasFace() {
		t.Fatal("a refused attach changed the folder")
	}
	good := trained("adapter", prov(true, imported))
	if err := AttachProjection(imported, good, false); err != nil {
		t.Fatal(err)
	}
	m, err := sdmodel.Load(imported)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Manifest.HasFace() || m.Manifest.Embedding.Space != sdmodel.DefaultSpace || m.Projection == nil {
		t.Errorf("after attach: %+v", m.Manifest)
	}
	if err := AttachProjection(imported, good, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a second attach: %v", err)
	}
	if err := AttachProjection(imported, trained("joint2", prov(false, imported)), true); err != nil {
		t.Errorf("forced: %v", err)
	}
}
