package sdmodel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/onnx"
)

// Generate writes a complete model folder at dir with random weights from
// cfg.Seed. See Export for writing given weights.
func Generate(dir string, cfg Config) error {
	cfg = cfg.withDefaults()
	return Export(dir, cfg, Random(cfg.Seed))
}

// Export writes a complete model folder at dir with the architecture cfg
// describes and weights from p (Random, or a trained checkpoint's lookup).
func Export(dir string, cfg Config, p Params) error {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return err
	}
	var vocab vocabulary
	if cfg.BPEPath != "" {
		var err error
		if vocab, err = clipVocabulary(cfg.BPEPath); err != nil {
			return err
		}
	} else {
		vocab = tinyVocabulary()
	}
	for _, sub := range []string{"text_encoder", "unet", "vae_decoder", "face0", "tokenizer", "scheduler"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("sdmodel: %w", err)
		}
	}
	var opts []onnx.SaveOption
	if cfg.ExternalDataThreshold > 0 {
		opts = append(opts, onnx.ExternalDataThreshold(cfg.ExternalDataThreshold), onnx.ExternalDataFile("weights.pb"))
	}
	graphs := []struct {
		file string
		g    *onnx.Graph
	}{
		{TextEncoderFile, buildTextEncoder(cfg, len(vocab.tokens), p)},
		{UNetFile, buildUNet(cfg, p)},
		{VAEDecoderFile, buildVAEDecoder(cfg, p)},
		{ProjectionFile, buildProjection(cfg, p)},
	}
	for _, gr := range graphs {
		gr.g.SetMeta("face0.component", filepath.Dir(gr.file))
		gr.g.SetMeta("face0.model", cfg.Name)
		if err := gr.g.Save(filepath.Join(dir, gr.file), opts...); err != nil {
			return fmt.Errorf("sdmodel: write %s: %w", gr.file, err)
		}
	}
	if err := vocab.write(filepath.Join(dir, VocabFile), filepath.Join(dir, MergesFile)); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, SchedulerFile), SD15Scheduler()); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, ManifestFile), cfg.manifest(len(vocab.tokens)-1))
}

func (c Config) check() error {
	switch {
	case c.UNetChannels%2 != 0:
		return fmt.Errorf("sdmodel: UNet channels %d must be even (the timestep embedding is half cos, half sin)", c.UNetChannels)
	case c.UNetChannels%c.UNetGroups != 0:
		return fmt.Errorf("sdmodel: UNet channels %d do not split into %d GroupNorm groups", c.UNetChannels, c.UNetGroups)
	case c.TextWidth%c.TextHeads != 0:
		return fmt.Errorf("sdmodel: text width %d does not split into %d heads", c.TextWidth, c.TextHeads)
	case 2*c.UNetChannels%c.UNetHeads != 0:
		return fmt.Errorf("sdmodel: UNet width %d does not split into %d heads", 2*c.UNetChannels, c.UNetHeads)
	case c.ContextLength < 3:
		return fmt.Errorf("sdmodel: context length %d leaves no room for the 3 face tokens", c.ContextLength)
	}
	return nil
}

func (c Config) manifest(endToken int) Manifest {
	var m Manifest
	m.Format = ManifestFormat
	m.Name = c.Name
	m.Embedding.Space = c.EmbeddingSpace
	m.Embedding.Dim = c.EmbeddingDim
	m.FaceTokens = 3
	m.FaceTokenStart = c.ContextLength - 3
	m.TextWidth = c.TextWidth
	m.ContextLength = c.ContextLength
	m.PadToken = endToken
	m.LatentChannels = 4
	m.VAEScaleFactor = 8
	m.LatentScale = 0.18215
	m.SampleSize = c.SampleSize
	m.Guidance.W = 7.5
	m.Guidance.C = 1
	m.Guidance.A = 0
	return m
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("sdmodel: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("sdmodel: %w", err)
	}
	return nil
}
