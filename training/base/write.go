package base

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// TinyCheckpointArch is the tiny architecture for single-file test
// checkpoints: Tiny's networks with CLIP's full 49,408-token vocabulary,
// since a single file is read with CLIP's tokenizer (it carries none).
func TinyCheckpointArch() Arch {
	u, v, t := Tiny()
	t.VocabSize = textenc.SD1().VocabSize
	return Arch{UNet: u, VAE: v, Text: t}
}

// WriteCheckpointOptions choose the layout variants WriteCheckpoint writes.
type WriteCheckpointOptions struct {
	// FP16 stores every weight as F16 (as most shared checkpoints are).
	FP16 bool
	// EMA adds a model_ema.* copy of the UNet, with other values than the
	// plain one (its own seed), as v1-5-pruned.safetensors has.
	EMA bool
	// OldTextNames names the text encoder cond_stage_model.transformer.*
	// without text_model. (SD 1.4-era files).
	OldTextNames bool
}

// Seeds of WriteCheckpoint's networks, offsets from its seed: the UNet,
// the VAE and the text encoder as WriteRandom, and the EMA copy.
const (
	SeedUNet = 0
	SeedVAE  = 1
	SeedText = 2
	SeedEMA  = 3
)

// WriteCheckpoint writes a single-file checkpoint in the original
// (latent-diffusion) layout with seeded random weights: the text encoder,
// the VAE (its attention projections as 1×1 convolutions), the UNet,
// optionally its EMA copy, and the DDPM schedule buffers and position_ids
// a real file carries. An architecture other than SD1's is recorded in the
// metadata (ArchMeta). It streams: one tensor is in memory at a time, so a
// full-size (4.3 GB float32) checkpoint needs no more than its largest
// tensor. Tests and the full-size run write the checkpoints they import.
func WriteCheckpoint(path string, arch Arch, seed uint64, o WriteCheckpointOptions) error {
	type entry struct {
		key   string
		spec  model.ParamSpec
		seed  uint64
		shape []int
		raw   func() []byte // for non-weight tensors
	}
	var entries []entry
	add := func(p ckpt.Part, specs []model.ParamSpec, sd uint64, layers, levels int, ema bool) error {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Name
		}
		keys, err := ckpt.Keys(p, names, layers, levels)
		if err != nil {
			return err
		}
		for _, s := range specs {
			key, shape := keys[s.Name], s.Shape
			if p == ckpt.VAE && ckpt.IsVAEAttentionConv(s.Name) {
				shape = append(append([]int(nil), shape...), 1, 1)
			}
			if p == ckpt.TextEncoder && o.OldTextNames {
				key = ckpt.OldTextPrefix + s.Name[len("text_model."):]
			}
			if ema {
				key = ckpt.EMAKey(key)
			}
			entries = append(entries, entry{key: key, spec: s, seed: sd, shape: shape})
		}
		return nil
	}
	if err := arch.check(); err != nil {
		return err
	}
	layers, levels := arch.UNet.LayersPerBlock, len(arch.VAE.BlockOutChannels)
	if err := add(ckpt.TextEncoder, textenc.Specs(arch.Text), seed+SeedText, layers, levels, false); err != nil {
		return err
	}
	if err := add(ckpt.VAE, vae.Specs(arch.VAE), seed+SeedVAE, layers, levels, false); err != nil {
		return err
	}
	if err := add(ckpt.UNet, sd.Specs(arch.UNet), seed+SeedUNet, layers, levels, false); err != nil {
		return err
	}
	if o.EMA {
		if err := add(ckpt.UNet, sd.Specs(arch.UNet), seed+SeedEMA, layers, levels, true); err != nil {
			return err
		}
		entries = append(entries,
			entry{key: ckpt.EMAPrefix + "decay", raw: func() []byte { return safetensors.FromFloat32(nil, []float32{0.9999}).Data }},
			entry{key: ckpt.EMAPrefix + "num_updates", raw: func() []byte { return binary.LittleEndian.AppendUint32(nil, 470000) }})
	}
	// The DDPM buffers every latent-diffusion checkpoint carries (values
	// are not read by an import; zeros keep the file honest in shape).
	for _, b := range []string{"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
		"log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
		"posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"} {
		entries = append(entries, entry{key: b, shape: []int{1000}, raw: func() []byte { return make([]byte, 4000) }})
	}
	pos := ckpt.TextPrefix + "embeddings.position_ids"
	if o.OldTextNames {
		pos = ckpt.OldTextPrefix + "embeddings.position_ids"
	}
	entries = append(entries, entry{key: pos, shape: []int{1, arch.Text.MaxPositionEmbeddings}, raw: func() []byte {
		b := make([]byte, 0, 8*arch.Text.MaxPositionEmbeddings)
		for i := range arch.Text.MaxPositionEmbeddings {
			b = binary.LittleEndian.AppendUint64(b, uint64(i))
		}
		return b
	}})

	headers := make([]safetensors.Header, len(entries))
	for i, e := range entries {
		dt := safetensors.F32
		switch {
		case e.raw == nil && o.FP16:
			dt = safetensors.F16
		case e.key == pos:
			dt = safetensors.I64
		case e.key == ckpt.EMAPrefix+"num_updates":
			dt = safetensors.I32
		}
		shape := e.shape
		if e.key == ckpt.EMAPrefix+"decay" || e.key == ckpt.EMAPrefix+"num_updates" {
			shape = []int{}
		}
		headers[i] = safetensors.Header{Name: e.key, DType: dt, Shape: shape}
	}
	var opts []safetensors.WriteOption
	meta := map[string]string{"format": "pt"}
	if !reflect.DeepEqual(arch, SD1()) {
		b, err := json.Marshal(arch)
		if err != nil {
			return err
		}
		meta[ArchMeta] = string(b)
	}
	opts = append(opts, safetensors.WithMetadata(meta))
	return safetensors.WriteStream(path, headers, func(i int) ([]byte, error) {
		e := entries[i]
		if e.raw != nil {
			return e.raw(), nil
		}
		v := model.NewWeights([]model.ParamSpec{e.spec}, e.seed)[e.spec.Name].Data
		if o.FP16 {
			return safetensors.FromFloat16(e.shape, v).Data, nil
		}
		return safetensors.FromFloat32(e.shape, v).Data, nil
	}, opts...)
}

// check validates the three configs.
func (a Arch) check() error {
	if err := a.UNet.Validate(); err != nil {
		return err
	}
	if err := a.VAE.Validate(); err != nil {
		return err
	}
	if err := a.Text.Validate(); err != nil {
		return fmt.Errorf("base: %w", err)
	}
	return nil
}
