// Package model defines the trainable Face0 networks once, by config, for two
// runtimes: GoMLX graphs for training (this package's Build* functions) and
// ONNX graphs for inference (Export*), under the same weight names.
//
// Two networks:
//
//   - the face projection, exactly the paper's (Sec. 2.3): a 4-layer MLP
//     E → H → H → H → 3·D with ReLU after the three hidden layers, whose
//     output overrides the last three of the 77 context tokens;
//   - a small denoiser that a CPU can train: a latent-patch diffusion
//     transformer (patchify, sinusoidal timestep embedding + MLP, N blocks
//     of self-attention, cross-attention to the context and a GELU MLP,
//     unpatchify) predicting ε. It is all matmuls and attention, with no
//     convolution, so its gradients work on GoMLX's pure-Go backend (which
//     lacks the Pad and Reverse ops that conv and slice gradients need). It
//     takes and returns exactly what SD's UNet does, so it drops into an SD
//     model folder in the UNet's place.
//
// See training/README.md for the weight names, shapes and FLOP counts.
package model

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/face0/face0/ml/sched"
)

// ProjectionLayers is the depth of the face projection MLP (the paper's 4).
const ProjectionLayers = 4

// Config sizes both networks.
type Config struct {
	// Latent: C channels (SD's 4) on a LatentSize×LatentSize grid (image
	// side / 8), cut into PatchSize×PatchSize patches.
	LatentChannels int `json:"latent_channels"`
	LatentSize     int `json:"latent_size"`
	PatchSize      int `json:"patch_size"`

	// Denoiser transformer.
	Width    int `json:"width"`     // token width W
	Blocks   int `json:"blocks"`    // transformer blocks
	Heads    int `json:"heads"`     // attention heads; must divide Width
	MLPRatio int `json:"mlp_ratio"` // feed-forward width = MLPRatio·Width
	// TimeFreqDim is the width of the sinusoidal timestep features (even);
	// TimeDim the width of the timestep embedding after its MLP.
	TimeFreqDim int `json:"time_freq_dim"`
	TimeDim     int `json:"time_dim"`

	// Context: ContextLength tokens of width TextWidth (CLIP: 77×768).
	ContextLength int `json:"context_length"`
	TextWidth     int `json:"text_width"`

	// Face projection: EmbeddingDim → ProjHidden (×3 layers) → FaceTokens·TextWidth.
	EmbeddingDim int `json:"embedding_dim"`
	ProjHidden   int `json:"proj_hidden"`
	FaceTokens   int `json:"face_tokens"`

	// Output is the denoiser's output parameterisation (the exported
	// out_sample is ε either way, and the loss stays ε-MSE):
	//
	//   - "eps" (or empty, as in configs and checkpoints from before this
	//     field): the network's last layer is ε̂;
	//   - "v-skip": the last layer is v and ε̂ = √ᾱ_t·v + √(1−ᾱ_t)·x_t, a skip
	//     from the input, so that at low SNR (ε ≈ x_t) the network need not
	//     copy x_t through itself. ᾱ_t is SD's scaled_linear schedule
	//     (AlphasCumprod), linearly interpolated at fractional timesteps.
	Output string `json:"output,omitempty"`

	// PatchSkip adds a learned linear map from each input patch straight to
	// the same output patch (patch_skip.weight, P·P·C square, starting at
	// zero). Near the end of sampling the prediction must cancel the
	// remaining noise of x_t value by value; through the narrow token
	// stream a tiny model does that badly (measured: samples keep a
	// per-patch colour noise), a direct path does it with a few thousand
	// weights.
	PatchSkip bool `json:"patch_skip,omitempty"`
}

// The denoiser's output parameterisations (Config.Output).
const (
	OutputEps   = "eps"
	OutputVSkip = "v-skip"
)

// OutputKind is Output with the empty default resolved ("eps").
func (c Config) OutputKind() string {
	if c.Output == "" {
		return OutputEps
	}
	return c.Output
}

// Tiny is the default for CPU training: an 8×8×4 latent (64×64 images),
// width 64, 2 blocks, a 32-wide context and 128-d face embeddings (the
// faceapi descriptor).
func Tiny() Config {
	return Config{
		LatentChannels: 4,
		LatentSize:     8,
		PatchSize:      2,
		Width:          64,
		Blocks:         2,
		Heads:          4,
		MLPRatio:       4,
		TimeFreqDim:    64,
		TimeDim:        64,
		ContextLength:  77,
		TextWidth:      32,
		EmbeddingDim:   128,
		ProjHidden:     64,
		FaceTokens:     3,
		Output:         OutputVSkip,
		PatchSkip:      true,
	}
}

// PaperProjection returns c with the projection sized as in the paper: 768
// hidden units into SD 1.x's 768-wide CLIP space.
func (c Config) PaperProjection() Config {
	c.ProjHidden = 768
	c.TextWidth = 768
	return c
}

// Tokens is the number of latent patches (the denoiser's sequence length).
func (c Config) Tokens() int {
	g := c.LatentSize / c.PatchSize
	return g * g
}

// PatchDim is the length of one flattened patch, p·p·C.
func (c Config) PatchDim() int { return c.PatchSize * c.PatchSize * c.LatentChannels }

// FaceTokenStart is the first context position the face tokens override
// (74 of 77: the paper's tokens 75-77).
func (c Config) FaceTokenStart() int { return c.ContextLength - c.FaceTokens }

// Validate reports the first inconsistent field.
func (c Config) Validate() error {
	pos := []struct {
		name string
		v    int
	}{
		{"latent_channels", c.LatentChannels}, {"latent_size", c.LatentSize}, {"patch_size", c.PatchSize},
		{"width", c.Width}, {"blocks", c.Blocks}, {"heads", c.Heads}, {"mlp_ratio", c.MLPRatio},
		{"time_freq_dim", c.TimeFreqDim}, {"time_dim", c.TimeDim},
		{"context_length", c.ContextLength}, {"text_width", c.TextWidth},
		{"embedding_dim", c.EmbeddingDim}, {"proj_hidden", c.ProjHidden}, {"face_tokens", c.FaceTokens},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("model config: %s is %d, want > 0", p.name, p.v)
		}
	}
	switch {
	case c.LatentSize%c.PatchSize != 0:
		return fmt.Errorf("model config: latent_size %d is not a multiple of patch_size %d", c.LatentSize, c.PatchSize)
	case c.Width%c.Heads != 0:
		return fmt.Errorf("model config: width %d does not split into %d heads", c.Width, c.Heads)
	case c.TimeFreqDim%2 != 0:
		return fmt.Errorf("model config: time_freq_dim %d must be even (cos and sin halves)", c.TimeFreqDim)
	case c.FaceTokens >= c.ContextLength:
		return errors.New("model config: face_tokens must be fewer than context_length")
	case c.Output != "" && c.Output != OutputEps && c.Output != OutputVSkip:
		return fmt.Errorf("model config: output %q, want %q or %q", c.Output, OutputEps, OutputVSkip)
	}
	return nil
}

// alphasCumprod is ᾱ_0..ᾱ_999 of SD's scaled_linear schedule (β from
// 0.00085 to 0.012), the table the "v-skip" output reads.
var alphasCumprod = sync.OnceValue(func() []float32 {
	s, err := sched.NewSchedule(sched.SD15(sched.DDIM))
	if err != nil {
		panic(fmt.Sprintf("model: SD's schedule: %v", err))
	}
	out := make([]float32, len(s.AlphasCumprod))
	for i, a := range s.AlphasCumprod {
		out[i] = float32(a)
	}
	return out
})

// AlphaBar is ᾱ at timestep t as the "v-skip" output computes it: t clamped
// to [0, N−1] and linearly interpolated between floor(t) and floor(t)+1.
func AlphaBar(t float64) float64 {
	a := alphasCumprod()
	n := float64(len(a) - 1)
	t = math.Min(math.Max(t, 0), n)
	lo := math.Floor(t)
	hi := math.Min(lo+1, n)
	f := t - lo
	return float64(a[int(lo)]) + f*(float64(a[int(hi)])-float64(a[int(lo)]))
}
