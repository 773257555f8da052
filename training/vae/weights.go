package vae

import (
	"fmt"
	"sort"
	"strings"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// OldAttentionNames maps the mid-block attention's weight names of older
// diffusers files (AttentionBlock, before diffusers 0.14; e.g. the original
// runwayml/stable-diffusion-v1-5 vae) to the new-style names Specs uses:
// ...attentions.0.query.weight → ...attentions.0.to_q.weight, and so on for
// .bias. group_norm keeps its name.
var OldAttentionNames = map[string]string{
	"query":     "to_q",
	"key":       "to_k",
	"value":     "to_v",
	"proj_attn": "to_out.0",
}

// renameOld returns the new-style name of an old-style attention weight
// (encoder./decoder. mid_block.attentions.N.{query,key,value,proj_attn}.{weight,bias}),
// or name unchanged.
func renameOld(name string) string {
	const at = ".mid_block.attentions."
	i := strings.Index(name, at)
	if i < 0 {
		return name
	}
	rest := name[i+len(at):] // "0.query.weight"
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return name
	}
	if n, ok := OldAttentionNames[parts[1]]; ok {
		return name[:i+len(at)] + parts[0] + "." + n + "." + parts[2]
	}
	return name
}

// Check verifies that w holds exactly the VAE's weights (Specs(c)) with
// their shapes. The error names every missing, unexpected and mis-shaped
// tensor, not a sample of them.
func Check(c Config, w model.Weights) error {
	return check(c, w, Specs(c), "VAE")
}

func check(c Config, w model.Weights, sp []model.ParamSpec, what string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return layers.Check(w, sp, "vae: weights do not match the "+what+" config")
}

// Subset returns the tensors of w that sp names (e.g. EncoderSpecs(c)),
// sharing their data.
func Subset(w model.Weights, sp []model.ParamSpec) model.Weights {
	out := model.Weights{}
	for _, s := range sp {
		if t, ok := w[s.Name]; ok {
			out[s.Name] = t
		}
	}
	return out
}

// Rename applies OldAttentionNames to every old-style mid-block attention
// name in w, in place. It fails if a file holds both the old and the new
// name of one tensor.
func Rename(w model.Weights) error {
	var clash []string
	for k, t := range w {
		n := renameOld(k)
		if n == k {
			continue
		}
		if _, ok := w[n]; ok {
			clash = append(clash, k+" and "+n)
			continue
		}
		delete(w, k)
		w[n] = t
	}
	if len(clash) > 0 {
		sort.Strings(clash)
		return fmt.Errorf("vae: weights hold both old and new attention names: %s", strings.Join(clash, ", "))
	}
	return nil
}

// LoadWeights reads a diffusers VAE weight file
// (vae/diffusion_pytorch_model.safetensors: float32, float16 or bfloat16)
// and checks it against c. prefix is stripped from every name first: pass
// "" for a plain VAE file or e.g. "vae." for a checkpoint that holds other
// networks too, whose other tensors are then ignored. Old-style attention
// names (query, key, value, proj_attn) are renamed by OldAttentionNames;
// every other name maps one to one: weight "X" of the file is the tensor
// Specs(c) calls "X".
func LoadWeights(path string, c Config, prefix string) (model.Weights, error) {
	w, err := layers.ReadPrefixed(path, prefix)
	if err != nil {
		return nil, err
	}
	if err := Rename(w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := Check(c, w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// NewWeights initialises the VAE's weights from seed (see Specs).
func NewWeights(c Config, seed uint64) model.Weights {
	return model.NewWeights(Specs(c), seed)
}
