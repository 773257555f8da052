package textenc

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/training/model"
)

// Check verifies that w holds exactly the text model's weights (Specs(c))
// with their shapes. The error names every missing, unexpected and
// mis-shaped tensor, not a sample of them.
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
	return fmt.Errorf("textenc: weights do not match the text encoder config: %s", strings.Join(parts, "; "))
}

// LoadWeights reads a transformers CLIPTextModel weight file
// (text_encoder/model.safetensors: float32, float16 or bfloat16, names as
// transformers saves them) and checks it against c. prefix is stripped from
// every name first: pass "" for a plain text_encoder file, or e.g.
// "text_encoder." for a checkpoint that holds other networks too, whose
// other tensors are then ignored. The position_ids buffer
// (text_model.embeddings.position_ids, int64) that older transformers
// versions saved is ignored; any other non-float tensor is an error.
func LoadWeights(path string, c Config, prefix string) (model.Weights, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	w := model.Weights{}
	for _, k := range f.Names() {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok || name == PositionIDs {
			continue
		}
		data, shape, err := f.Float32(k)
		if err != nil {
			return nil, err
		}
		w[name] = &model.Tensor{Shape: shape, Data: data}
	}
	if err := Check(c, w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// NewWeights initialises the text model's weights from seed (see Specs).
func NewWeights(c Config, seed uint64) model.Weights {
	return model.NewWeights(Specs(c), seed)
}
