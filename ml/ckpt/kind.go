package ckpt

import (
	"fmt"
	"strings"

	"github.com/face0/face0/ml/safetensors"
)

// Kind is what a weight file holds, as far as its keys and shapes tell.
type Kind string

// The kinds Detect recognises. Only SD1 imports; the others are refused
// with their name, so that a user who picked the wrong file learns which
// file it was.
const (
	SD1           Kind = "Stable Diffusion 1.x"
	SD1Inpaint    Kind = "a Stable Diffusion 1.x inpainting model (9 input channels: latent, mask, masked image)"
	SD1Pix2Pix    Kind = "an InstructPix2Pix model (8 input channels)"
	SD2           Kind = "Stable Diffusion 2.x (OpenCLIP ViT-H text encoder, 1024-wide context)"
	SDXL          Kind = "Stable Diffusion XL (two text encoders, 2048-wide context)"
	SD3           Kind = "Stable Diffusion 3 (MMDiT)"
	Flux          Kind = "FLUX"
	LoRA          Kind = "a LoRA (low-rank adapter weights for another model, not a full checkpoint)"
	ControlNet    Kind = "a ControlNet"
	VAEOnly       Kind = "a VAE alone (no UNet or text encoder)"
	DiffusersUNet Kind = "a single diffusers network file (import the whole diffusers folder instead)"
	Unknown       Kind = "not a Stable Diffusion checkpoint"
)

// KindError is the refusal of a file that is not an SD 1.x checkpoint.
type KindError struct {
	Path string
	Kind Kind
	Why  string // the keys or shapes that told
}

func (e *KindError) Error() string {
	return fmt.Sprintf("ckpt: %s is %s (%s); face0 imports Stable Diffusion 1.x checkpoints (v1-4, v1-5 and models fine-tuned from them)", e.Path, e.Kind, e.Why)
}

// Source is what Detect and Map read: a weight file's keys and shapes.
// *safetensors.Reader is one.
type Source interface {
	Names() []string
	Info(name string) (safetensors.Info, bool)
}

var _ Source = (*safetensors.Reader)(nil)

// Detect says what src holds and why (the key or shape that decided).
func Detect(src Source) (Kind, string) {
	names := src.Names()
	has := func(prefix string) (string, bool) {
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				return n, true
			}
		}
		return "", false
	}
	contains := func(sub string) (string, bool) {
		for _, n := range names {
			if strings.Contains(n, sub) {
				return n, true
			}
		}
		return "", false
	}
	for _, s := range []string{"lora_unet_", "lora_te_", "lora_te1_", ".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", "lora.down.", "lora.up."} {
		if k, ok := contains(s); ok {
			return LoRA, "key " + k
		}
	}
	if k, ok := has("conditioner.embedders."); ok {
		return SDXL, "key " + k
	}
	if k, ok := has(UNetPrefix + "label_emb."); ok {
		return SDXL, "key " + k
	}
	if k, ok := has(UNetPrefix + "joint_blocks."); ok {
		return SD3, "key " + k
	}
	if k, ok := has("double_blocks."); ok {
		return Flux, "key " + k
	}
	if k, ok := has(UNetPrefix + "double_blocks."); ok {
		return Flux, "key " + k
	}
	if k, ok := has("control_model."); ok {
		return ControlNet, "key " + k
	}
	if k, ok := has("cond_stage_model.model."); ok {
		return SD2, "key " + k
	}
	unet, haveUNet := has(UNetPrefix)
	if !haveUNet {
		if k, ok := has("down_blocks."); ok {
			return DiffusersUNet, "key " + k + " (diffusers' names)"
		}
		if k, ok := has("text_model."); ok {
			return DiffusersUNet, "key " + k + " (transformers' names)"
		}
		_, enc := has("encoder.down.")
		_, dec := has("decoder.up.")
		_, fenc := has(VAEPrefix + "encoder.")
		if (enc && dec) || fenc {
			return VAEOnly, "encoder and decoder keys only"
		}
		if len(names) == 0 {
			return Unknown, "it holds no tensors"
		}
		return Unknown, fmt.Sprintf("no %s* keys; its first key is %s", UNetPrefix, names[0])
	}
	// The context width: SD 1.x cross-attends to CLIP ViT-L's 768.
	for _, n := range names {
		if strings.HasPrefix(n, UNetPrefix) && strings.HasSuffix(n, ".attn2.to_k.weight") {
			if info, ok := src.Info(n); ok && len(info.Shape) == 2 && info.Shape[1] == 1024 {
				return SD2, fmt.Sprintf("%s is %v: a 1024-wide context", n, info.Shape)
			}
			break
		}
	}
	if info, ok := src.Info(UNetPrefix + "input_blocks.0.0.weight"); ok && len(info.Shape) == 4 {
		switch info.Shape[1] {
		case 9:
			return SD1Inpaint, fmt.Sprintf("%sinput_blocks.0.0.weight is %v", UNetPrefix, info.Shape)
		case 8:
			return SD1Pix2Pix, fmt.Sprintf("%sinput_blocks.0.0.weight is %v", UNetPrefix, info.Shape)
		}
	}
	return SD1, "key " + unet
}
