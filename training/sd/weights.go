package sd

import (
	"fmt"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// Check verifies that w holds exactly the UNet's weights (Specs(c)) with
// their shapes. The error names every missing, unexpected and mis-shaped
// tensor, not a sample of them.
func Check(c Config, w model.Weights) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return layers.Check(w, Specs(c), "sd: weights do not match the UNet config")
}

// LoadWeights reads a diffusers UNet weight file (unet/diffusion_pytorch_model.safetensors:
// float32, float16 or bfloat16, names as diffusers saves them, with prefix
// stripped from every name first; pass "" for a plain UNet file or e.g.
// "unet." for a checkpoint that holds other networks too, whose other
// tensors are then ignored) and checks it against c. Names map one to one:
// weight "X" of the file is the tensor Specs(c) calls "X".
func LoadWeights(path string, c Config, prefix string) (model.Weights, error) {
	w, err := layers.ReadPrefixed(path, prefix)
	if err != nil {
		return nil, err
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
