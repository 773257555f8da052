package textenc

import (
	"fmt"
	"strings"

	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// Check verifies that w holds exactly the text model's weights (Specs(c))
// with their shapes. The error names every missing, unexpected and
// mis-shaped tensor, not a sample of them.
func Check(c Config, w model.Weights) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return layers.Check(w, Specs(c), "textenc: weights do not match the text encoder config")
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
