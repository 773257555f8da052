// Package sd is Stable Diffusion 1.x's UNet (diffusers' UNet2DConditionModel)
// defined once, by config, for two runtimes: a GoMLX graph for training
// (Forward) and an ONNX graph for inference (Export), under diffusers' weight
// names and torch's weight layouts, so a diffusers
// unet/diffusion_pytorch_model.safetensors loads as is.
//
// The same code builds SD 1.x's full UNet (SD1()) and a tiny one (Tiny()) a
// CPU can train. Convolutions are switchable (ConvIm2col, whose gradient
// works on GoMLX's pure-Go backend, or ConvNative for XLA). See README.md.
package sd

import (
	"errors"
	"fmt"
)

// Block types, as diffusers names them.
const (
	CrossAttnDownBlock = "CrossAttnDownBlock2D"
	DownBlock          = "DownBlock2D"
	CrossAttnUpBlock   = "CrossAttnUpBlock2D"
	UpBlock            = "UpBlock2D"
)

// Config is the subset of diffusers' UNet2DConditionModel config that SD 1.x
// uses, with its JSON names, so a unet/config.json decodes into it.
type Config struct {
	SampleSize        int      `json:"sample_size"` // latent side (informational; any multiple of 2^(blocks-1) runs)
	InChannels        int      `json:"in_channels"`
	OutChannels       int      `json:"out_channels"`
	BlockOutChannels  []int    `json:"block_out_channels"`
	DownBlockTypes    []string `json:"down_block_types"`
	UpBlockTypes      []string `json:"up_block_types"`
	LayersPerBlock    int      `json:"layers_per_block"`
	NormNumGroups     int      `json:"norm_num_groups"`
	NormEps           float64  `json:"norm_eps"` // resnets and conv_norm_out (transformers' GroupNorm uses 1e-6)
	CrossAttentionDim int      `json:"cross_attention_dim"`
	// AttentionHeadDim is, as in diffusers' SD 1.x configs despite its name,
	// the number of attention heads (8); each head is channels/8 wide.
	AttentionHeadDim int  `json:"attention_head_dim"`
	FlipSinToCos     bool `json:"flip_sin_to_cos"`
	FreqShift        int  `json:"freq_shift"`
}

// SD1 is Stable Diffusion 1.x's UNet (v1-4, v1-5): 859,520,964 weights.
func SD1() Config {
	return Config{
		SampleSize:        64,
		InChannels:        4,
		OutChannels:       4,
		BlockOutChannels:  []int{320, 640, 1280, 1280},
		DownBlockTypes:    []string{CrossAttnDownBlock, CrossAttnDownBlock, CrossAttnDownBlock, DownBlock},
		UpBlockTypes:      []string{UpBlock, CrossAttnUpBlock, CrossAttnUpBlock, CrossAttnUpBlock},
		LayersPerBlock:    2,
		NormNumGroups:     32,
		NormEps:           1e-5,
		CrossAttentionDim: 768,
		AttentionHeadDim:  8,
		FlipSinToCos:      true,
		FreqShift:         0,
	}
}

// Tiny is the same architecture at CPU-trainable width: channels 32/64, one
// resnet per block, 8 groups, 4 heads, a 32-wide context.
func Tiny() Config {
	return Config{
		SampleSize:        8,
		InChannels:        4,
		OutChannels:       4,
		BlockOutChannels:  []int{32, 64},
		DownBlockTypes:    []string{CrossAttnDownBlock, DownBlock},
		UpBlockTypes:      []string{UpBlock, CrossAttnUpBlock},
		LayersPerBlock:    1,
		NormNumGroups:     8,
		NormEps:           1e-5,
		CrossAttentionDim: 32,
		AttentionHeadDim:  4,
		FlipSinToCos:      true,
		FreqShift:         0,
	}
}

// TimeFreqDim is the width of the sinusoidal timestep features
// (block_out_channels[0]); TimeEmbedDim that of the timestep embedding (4×).
func (c Config) TimeFreqDim() int  { return c.BlockOutChannels[0] }
func (c Config) TimeEmbedDim() int { return 4 * c.BlockOutChannels[0] }

// Downscale is the factor between the sample and the lowest resolution:
// the latent side must be a multiple of it.
func (c Config) Downscale() int { return 1 << (len(c.BlockOutChannels) - 1) }

// Validate reports a config this package cannot build.
func (c Config) Validate() error {
	var errs []error
	n := len(c.BlockOutChannels)
	if n == 0 {
		return errors.New("sd: config: block_out_channels is empty")
	}
	if len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n {
		errs = append(errs, fmt.Errorf("%d block_out_channels but %d down and %d up block types", n, len(c.DownBlockTypes), len(c.UpBlockTypes)))
	}
	for i, t := range c.DownBlockTypes {
		if t != CrossAttnDownBlock && t != DownBlock {
			errs = append(errs, fmt.Errorf("down_block_types[%d] %q: want %s or %s", i, t, CrossAttnDownBlock, DownBlock))
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != CrossAttnUpBlock && t != UpBlock {
			errs = append(errs, fmt.Errorf("up_block_types[%d] %q: want %s or %s", i, t, CrossAttnUpBlock, UpBlock))
		}
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 || c.LayersPerBlock <= 0 || c.CrossAttentionDim <= 0 {
		errs = append(errs, errors.New("in_channels, out_channels, layers_per_block and cross_attention_dim must be positive"))
	}
	if c.NormNumGroups <= 0 || c.AttentionHeadDim <= 0 {
		errs = append(errs, errors.New("norm_num_groups and attention_head_dim must be positive"))
	}
	for _, ch := range c.BlockOutChannels {
		if c.NormNumGroups > 0 && ch%c.NormNumGroups != 0 {
			errs = append(errs, fmt.Errorf("channels %d do not split into %d groups", ch, c.NormNumGroups))
		}
		if c.AttentionHeadDim > 0 && ch%c.AttentionHeadDim != 0 {
			errs = append(errs, fmt.Errorf("channels %d do not split into %d heads", ch, c.AttentionHeadDim))
		}
	}
	if c.BlockOutChannels[0]%2 != 0 {
		errs = append(errs, errors.New("block_out_channels[0] (the timestep features) must be even"))
	}
	if !c.FlipSinToCos {
		errs = append(errs, errors.New("flip_sin_to_cos false is not supported (SD 1.x uses true)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sd: config: %w", errors.Join(errs...))
	}
	return nil
}
