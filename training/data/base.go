package data

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// BaseLatent is the pixel layout a base model's VAE encodes: size×size RGB
// in [-1, 1], channels first (Latent with factor 1).
func BaseLatent(size int) Latent { return Latent{Size: size, Factor: 1} }

// writeBaseEncoder makes dir an ml/sdmodel folder whose text encoder and
// tokenizer are the base model's: a small generated folder (for the parts
// ml/sdmodel requires) with text_encoder/model.onnx exported from the
// base's weights, its tokenizer files, and the manifest's pad token set to
// the base's end token.
func writeBaseEncoder(dir string, m *base.Model) error {
	g := sdmodel.TinyConfig()
	g.Name = "frozen-text-encoder"
	g.TextWidth, g.TextLayers, g.TextHeads, g.ContextLength = m.Text.HiddenSize, 1, 1, m.ContextLength()
	if err := sdmodel.Generate(dir, g); err != nil {
		return fmt.Errorf("data: base text encoder: %w", err)
	}
	w, err := m.TextWeights()
	if err != nil {
		return fmt.Errorf("data: base text encoder: %w", err)
	}
	if err := textenc.WriteONNX(dir, m.Text, w); err != nil {
		return fmt.Errorf("data: base text encoder: %w", err)
	}
	if err := m.WriteTokenizer(dir); err != nil {
		return fmt.Errorf("data: base tokenizer: %w", err)
	}
	mp := filepath.Join(dir, sdmodel.ManifestFile)
	raw, err := os.ReadFile(mp)
	if err != nil {
		return err
	}
	var man map[string]any
	if err := json.Unmarshal(raw, &man); err != nil {
		return err
	}
	man["pad_token"] = m.EndToken
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(mp, append(b, '\n'), 0o644)
}

// vaeEncode replaces each kept item's pixels (BaseLatent layout) by the
// base VAE's latent mean (latent_dist.mode(), not yet times the scaling
// factor), in batches on the GoMLX backend.
func vaeEncode(ctx context.Context, m *base.Model, items []item, size int, logf func(string, ...any)) error {
	w, err := m.VAEWeights()
	if err != nil {
		return fmt.Errorf("data: base VAE: %w", err)
	}
	be, err := training.Backend()
	if err != nil {
		return err
	}
	specs := vae.EncoderSpecs(m.VAE)
	ws := make([]any, len(specs))
	for i, s := range specs {
		ws[i] = tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...)
	}
	P := len(specs)
	exec, err := NewExec(be, func(in []*Node) *Node {
		mean, _ := vae.Encode(m.VAE, model.LookupFrom(specs, in[:P]), in[P], vae.Options{Conv: training.BackendConv()})
		return mean
	})
	if err != nil {
		return fmt.Errorf("data: base VAE: %w", err)
	}
	defer exec.Finalize()
	var todo []int
	for i := range items {
		if items[i].skip == "" {
			todo = append(todo, i)
		}
	}
	const batch = 4
	n := 3 * size * size
	for s := 0; s < len(todo); s += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		idx := todo[s:min(s+batch, len(todo))]
		px := make([]float32, 0, len(idx)*n)
		for _, i := range idx {
			px = append(px, items[i].latent...)
		}
		out, err := exec.Exec(append(ws[:P:P], tensors.FromFlatDataAndDimensions(px, len(idx), 3, size, size))...)
		if err != nil {
			return fmt.Errorf("data: base VAE: %w", err)
		}
		lat, err := tensors.CopyFlatData[float32](out[0])
		out[0].FinalizeAll()
		if err != nil {
			return err
		}
		k := len(lat) / len(idx)
		for j, i := range idx {
			items[i].latent = lat[j*k : (j+1)*k : (j+1)*k]
		}
		if (s/batch)%25 == 0 {
			logf("VAE-encoding the dataset: %d of %d images", min(s+batch, len(todo)), len(todo))
		}
	}
	return nil
}
