package evaluate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/synthfaces"
)

// TestFineTuneBaseline fine-tunes the shipped model for a few steps on a
// held-out identity: the export is a model folder that loads, its
// denoiser differs from the shipped one, a second run with the same
// settings reuses it, and other settings train again.
func TestFineTuneBaseline(t *testing.T) {
	models := shippedModels(t)
	base := filepath.Join(models, "face0-synthfaces")
	o := FineTune{Steps: 3, Batch: 4, Prior: 8}
	tu, err := newTuner(base, 1, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tu.close()
	shipped := func() []byte {
		b, err := os.ReadFile(filepath.Join(base, "unet", "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := shipped()
	dir := filepath.Join(models, "ft")
	id := synthfaces.HeldOutBase + 20
	r, err := tu.run(context.Background(), 1, id, dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reused || r.Seconds <= 0 || r.FirstLoss <= 0 {
		t.Errorf("first run: %+v", r)
	}
	if !bytes.Equal(shipped(), before) {
		t.Fatal("fine-tuning wrote into the evaluated model's folder")
	}
	m, err := sdmodel.Load(dir)
	if err != nil {
		t.Fatalf("the fine-tuned model folder does not load: %v", err)
	}
	if m.Manifest.Name != "ft" {
		t.Errorf("manifest name %q, want ft", m.Manifest.Name)
	}
	got, err := readWeights(m, tu.cfg.Model)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for name, w := range got {
		if name[:5] == "unet." && !slices.Equal(w.Data, tu.init[name].Data) {
			changed++
		}
	}
	if changed == 0 {
		t.Error("fine-tuning changed no denoiser weight")
	}
	again, err := tu.run(context.Background(), 1, id, dir)
	if err != nil || !again.Reused || again.Seconds != r.Seconds {
		t.Errorf("second run with the same settings: %+v, %v; want the first reused", again, err)
	}
	o.Steps = 4
	tu2, err := newTuner(base, 1, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tu2.close()
	if other, err := tu2.run(context.Background(), 1, id, dir); err != nil || other.Reused {
		t.Errorf("a run with other settings: %+v, %v; want a new fine-tuning", other, err)
	}
}
