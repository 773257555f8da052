// Package textenc is the CLIP text encoder of Stable Diffusion 1.x
// (transformers' CLIPTextModel) defined once, by config, for two runtimes:
// a GoMLX graph (Forward, Encoder) and an ONNX graph for inference (Export),
// under transformers' weight names and torch's weight layouts, so a
// text_encoder/model.safetensors of an SD 1.x diffusers folder loads as is.
//
// Training keeps the text encoder frozen: the forward pass runs on GoMLX's
// pure-Go backend (it needs no gradient, and none is built). See README.md.
package textenc

import (
	"errors"
	"fmt"
)

// Activations of the MLP, as transformers names them (hidden_act).
const (
	QuickGELU = "quick_gelu" // x·σ(1.702x): CLIP ViT-L/14, SD 1.x
	GELU      = "gelu"       // exact (erf) GELU: OpenCLIP ViT-H, SD 2.x
)

// Config is the subset of transformers' CLIPTextConfig that the text model
// uses, with its JSON names, so a text_encoder/config.json decodes into it.
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"` // the context length, 77
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	HiddenAct             string  `json:"hidden_act"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
}

// SD1 is SD 1.x's text encoder, CLIP ViT-L/14's text model
// (openai/clip-vit-large-patch14): 123,060,480 weights in 196 tensors.
func SD1() Config {
	return Config{
		VocabSize:             49408,
		MaxPositionEmbeddings: 77,
		HiddenSize:            768,
		IntermediateSize:      3072,
		NumHiddenLayers:       12,
		NumAttentionHeads:     12,
		HiddenAct:             QuickGELU,
		LayerNormEps:          1e-5,
	}
}

// Tiny is the same architecture at test width: 32 wide, 2 layers, 2 heads,
// a 1000-token vocabulary and SD's 77 positions (ml/sdmodel's tiny text
// encoder has the same width, layers and heads).
func Tiny() Config {
	return Config{
		VocabSize:             1000,
		MaxPositionEmbeddings: 77,
		HiddenSize:            32,
		IntermediateSize:      128,
		NumHiddenLayers:       2,
		NumAttentionHeads:     2,
		HiddenAct:             QuickGELU,
		LayerNormEps:          1e-5,
	}
}

// Validate reports a config this package cannot build.
func (c Config) Validate() error {
	var errs []error
	if c.VocabSize <= 0 || c.MaxPositionEmbeddings <= 0 || c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHiddenLayers <= 0 || c.NumAttentionHeads <= 0 {
		errs = append(errs, errors.New("vocab_size, max_position_embeddings, hidden_size, intermediate_size, num_hidden_layers and num_attention_heads must be positive"))
	}
	if c.NumAttentionHeads > 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		errs = append(errs, fmt.Errorf("hidden_size %d does not split into %d heads", c.HiddenSize, c.NumAttentionHeads))
	}
	if c.HiddenAct != QuickGELU && c.HiddenAct != GELU {
		errs = append(errs, fmt.Errorf("hidden_act %q: want %s or %s", c.HiddenAct, QuickGELU, GELU))
	}
	if !(c.LayerNormEps > 0) {
		errs = append(errs, fmt.Errorf("layer_norm_eps %g must be positive", c.LayerNormEps))
	}
	if len(errs) > 0 {
		return fmt.Errorf("textenc: config: %w", errors.Join(errs...))
	}
	return nil
}
