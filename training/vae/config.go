// Package vae is Stable Diffusion 1.x's autoencoder (diffusers'
// AutoencoderKL) defined once, by config, for two runtimes: a GoMLX graph
// (Encode, Decode) and ONNX graphs (ExportEncoder, ExportDecoder) with SD's
// tensor names, under diffusers' weight names and torch's layouts, so a
// diffusers vae/diffusion_pytorch_model.safetensors loads as is.
//
// Training keeps the VAE frozen: the encoder runs once over the dataset to
// make latents, and the decoder turns latents into images. See README.md.
package vae

import (
	"errors"
	"fmt"
)

// Block types, as diffusers names them.
const (
	DownEncoderBlock = "DownEncoderBlock2D"
	UpDecoderBlock   = "UpDecoderBlock2D"
)

// normEps is the GroupNorm ε everywhere in diffusers' Encoder and Decoder
// (resnets, the mid-block attention and conv_norm_out): 1e-6.
const normEps = 1e-6

// Config is the subset of diffusers' AutoencoderKL config that SD 1.x uses,
// with its JSON names, so a vae/config.json decodes into it.
type Config struct {
	SampleSize       int      `json:"sample_size"` // image side (informational)
	InChannels       int      `json:"in_channels"`
	OutChannels      int      `json:"out_channels"`
	BlockOutChannels []int    `json:"block_out_channels"`
	DownBlockTypes   []string `json:"down_block_types"`
	UpBlockTypes     []string `json:"up_block_types"`
	LayersPerBlock   int      `json:"layers_per_block"`
	LatentChannels   int      `json:"latent_channels"`
	NormNumGroups    int      `json:"norm_num_groups"`
	ActFn            string   `json:"act_fn"` // "silu" (or empty)
	// ScalingFactor (0.18215 for SD 1.x) is not applied by this package:
	// multiply Encode's latents by it, divide by it before Decode.
	ScalingFactor float64 `json:"scaling_factor"`
}

// SD1 is Stable Diffusion 1.x's VAE (v1-4, v1-5, sd-vae-ft-mse): 83,653,863 weights.
func SD1() Config {
	return Config{
		SampleSize:       512,
		InChannels:       3,
		OutChannels:      3,
		BlockOutChannels: []int{128, 256, 512, 512},
		DownBlockTypes:   []string{DownEncoderBlock, DownEncoderBlock, DownEncoderBlock, DownEncoderBlock},
		UpBlockTypes:     []string{UpDecoderBlock, UpDecoderBlock, UpDecoderBlock, UpDecoderBlock},
		LayersPerBlock:   2,
		LatentChannels:   4,
		NormNumGroups:    32,
		ActFn:            "silu",
		ScalingFactor:    0.18215,
	}
}

// Tiny is the same architecture, with the same 8× downscale and 4 latent
// channels, at CPU width: channels 16/32/32/32, one resnet per encoder
// block (two per decoder block), 8 groups.
func Tiny() Config {
	c := SD1()
	c.SampleSize = 64
	c.BlockOutChannels = []int{16, 32, 32, 32}
	c.LayersPerBlock = 1
	c.NormNumGroups = 8
	return c
}

// Downscale is the factor between the image and the latent side: the image
// side must be a multiple of it.
func (c Config) Downscale() int { return 1 << (len(c.BlockOutChannels) - 1) }

// Validate reports a config this package cannot build.
func (c Config) Validate() error {
	var errs []error
	n := len(c.BlockOutChannels)
	if n == 0 {
		return errors.New("vae: config: block_out_channels is empty")
	}
	if len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n {
		errs = append(errs, fmt.Errorf("%d block_out_channels but %d down and %d up block types", n, len(c.DownBlockTypes), len(c.UpBlockTypes)))
	}
	for i, t := range c.DownBlockTypes {
		if t != DownEncoderBlock {
			errs = append(errs, fmt.Errorf("down_block_types[%d] %q: want %s", i, t, DownEncoderBlock))
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != UpDecoderBlock {
			errs = append(errs, fmt.Errorf("up_block_types[%d] %q: want %s", i, t, UpDecoderBlock))
		}
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 || c.LayersPerBlock <= 0 || c.LatentChannels <= 0 {
		errs = append(errs, errors.New("in_channels, out_channels, layers_per_block and latent_channels must be positive"))
	}
	if c.NormNumGroups <= 0 {
		errs = append(errs, errors.New("norm_num_groups must be positive"))
	}
	for _, ch := range c.BlockOutChannels {
		if c.NormNumGroups > 0 && ch%c.NormNumGroups != 0 {
			errs = append(errs, fmt.Errorf("channels %d do not split into %d groups", ch, c.NormNumGroups))
		}
	}
	if c.ActFn != "" && c.ActFn != "silu" {
		errs = append(errs, fmt.Errorf("act_fn %q: only silu is supported", c.ActFn))
	}
	if len(errs) > 0 {
		return fmt.Errorf("vae: config: %w", errors.Join(errs...))
	}
	return nil
}
