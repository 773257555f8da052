package sd

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/face0/face0/training/model"
)

// Check verifies that w holds exactly the UNet's weights (Specs(c)) with
// their shapes. The error names every missing, unexpected and mis-shaped
// tensor, not a sample of them.
func Check(c Config, w model.Weights) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var missing, shape, extra []string
	want := map[string]bool{}
	for _, s := range Specs(c) {
		want[s.Name] = true
		t, ok := w[s.Name]
		switch {
		case !ok:
			missing = append(missing, s.Name)
		case !slices.Equal(t.Shape, s.Shape):
			shape = append(shape, fmt.Sprintf("%s has shape %v, want %v", s.Name, t.Shape, s.Shape))
		case len(t.Data) != s.Size():
			shape = append(shape, fmt.Sprintf("%s has %d values, its shape %v needs %d", s.Name, len(t.Data), s.Shape, s.Size()))
		}
	}
	for k := range w {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d missing: %s", len(missing), strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d unexpected: %s", len(extra), strings.Join(extra, ", ")))
	}
	if len(shape) > 0 {
		parts = append(parts, fmt.Sprintf("%d with the wrong shape: %s", len(shape), strings.Join(shape, ", ")))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("sd: weights do not match the UNet config: %s", strings.Join(parts, "; "))
}

// LoadWeights reads a diffusers UNet weight file (unet/diffusion_pytorch_model.safetensors:
// float32, float16 or bfloat16, names as diffusers saves them, with prefix
// stripped from every name first; pass "" for a plain UNet file or e.g.
// "unet." for a checkpoint that holds other networks too, whose other
// tensors are then ignored) and checks it against c. Names map one to one:
// weight "X" of the file is the tensor Specs(c) calls "X".
func LoadWeights(path string, c Config, prefix string) (model.Weights, error) {
	all, _, err := model.ReadWeights(path)
	if err != nil {
		return nil, err
	}
	w := all
	if prefix != "" {
		w = model.Weights{}
		for k, t := range all {
			if name, ok := strings.CutPrefix(k, prefix); ok {
				w[name] = t
			}
		}
	}
	if err := Check(c, w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// NewWeights initialises the UNet's weights from seed (see Specs).
func NewWeights(c Config, seed uint64) model.Weights {
	return model.NewWeights(Specs(c), seed)
}
