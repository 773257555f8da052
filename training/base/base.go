// Package base opens a Stable Diffusion 1.x model as the starting point of
// Face0 fine-tuning (paper, Sec. 2.3): its UNet is trained, its VAE and
// CLIP text encoder stay frozen and prepare the dataset, and its tokenizer
// and scheduler go into the exported model. It also turns such a model
// into a face0 model folder (Import) and attaches a trained projection to
// one (AttachProjection).
//
// Open takes three kinds of base:
//
//   - a diffusers folder, as save_pretrained writes it (and the hubs serve):
//
//     unet/config.json, unet/diffusion_pytorch_model.safetensors
//     vae/config.json, vae/diffusion_pytorch_model.safetensors
//     text_encoder/config.json, text_encoder/model.safetensors
//     tokenizer/vocab.json, tokenizer/merges.txt
//     scheduler/scheduler_config.json          (optional)
//
//   - a single-file checkpoint in the original layout (the .safetensors
//     ComfyUI keeps in models/checkpoints), read through ml/ckpt;
//
//   - a face0 model folder that Import wrote: its ONNX files hold the
//     weights, and unet/, text_encoder/, vae_decoder/ and vae_encoder/
//     hold diffusers' config.json beside them.
//
// Open reads configs and headers only and checks every tensor's name and
// shape that it can without reading the weights; the weights are read when
// asked for, each checked against its config, so that a missing, extra or
// mis-shaped tensor fails with its name.
package base

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// Files of a diffusers folder, relative to it.
const (
	UNetConfig        = "unet/config.json"
	UNetWeights       = "unet/diffusion_pytorch_model.safetensors"
	VAEConfig         = "vae/config.json"
	VAEWeights        = "vae/diffusion_pytorch_model.safetensors"
	TextConfig        = "text_encoder/config.json"
	TextWeights       = "text_encoder/model.safetensors"
	TokenizerDir      = "tokenizer"
	TokenizerVocab    = "tokenizer/vocab.json"
	TokenizerMerges   = "tokenizer/merges.txt"
	SchedulerConfig   = "scheduler/scheduler_config.json"
	endOfTextToken    = "<|endoftext|>"
	defaultContextLen = 77
)

// Kinds of base, as Model.Kind names them.
const (
	KindDiffusers  = "diffusers folder"
	KindCheckpoint = "single-file checkpoint"
	KindModel      = "face0 model folder"
)

// Model is an opened base model: its configs and where its weights are.
type Model struct {
	// Dir is the folder, or the checkpoint file, the base was opened from.
	Dir  string
	Kind string
	UNet sd.Config
	VAE  vae.Config
	Text textenc.Config
	// Tokenizer is CLIP's tokenizer as the base has it.
	Tokenizer *clip.Tokenizer
	// EndToken is the tokenizer's <|endoftext|> id, which SD pads with.
	EndToken int
	// HasScheduler says whether the base has a scheduler_config.json
	// (at SchedulerConfig).
	HasScheduler bool

	src source
}

// source is where a kind of base keeps its weights and tokenizer.
type source interface {
	unet(m *Model) (model.Weights, error) // diffusers' names, unprefixed
	vae(m *Model) (model.Weights, error)
	text(m *Model) (model.Weights, error)
	// writeTokenizer writes tokenizer/vocab.json and merges.txt into dir.
	writeTokenizer(m *Model, dir string) error
	// files are what the frozen parts (VAE, text encoder, tokenizer) are
	// read from, for cache keys.
	files(m *Model) []string
}

// Open opens a base of any of the three kinds (see the package comment).
func Open(path string) (*Model, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("base model: %s is missing (give a diffusers SD 1.x folder, a single-file .safetensors checkpoint, or a folder face0 models import wrote)", abs)
	}
	if err != nil {
		return nil, fmt.Errorf("base model: %w", err)
	}
	switch {
	case !st.IsDir():
		return openCheckpoint(abs, CheckpointOptions{})
	case fileExists(filepath.Join(abs, sdmodel.ManifestFile)):
		return openModelFolder(abs)
	}
	return openDiffusers(abs)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// openDiffusers reads dir's configs and tokenizer and checks that the three
// weight files exist and that the networks fit together.
func openDiffusers(abs string) (*Model, error) {
	m := &Model{Dir: abs, Kind: KindDiffusers, src: diffusersSource{}}
	for _, c := range []struct {
		file string
		into any
	}{{UNetConfig, &m.UNet}, {VAEConfig, &m.VAE}, {TextConfig, &m.Text}} {
		if err := readJSON(m.Path(c.file), c.into); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, f := range []string{UNetWeights, VAEWeights, TextWeights, TokenizerVocab, TokenizerMerges} {
		if st, err := os.Stat(m.Path(f)); err != nil || st.IsDir() {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("base model %s: missing %v (a diffusers SD 1.x folder has unet/, vae/, text_encoder/ and tokenizer/; .bin weights must be converted to .safetensors; a single-file checkpoint is given by its .safetensors path)", abs, missing)
	}
	if err := m.fit(); err != nil {
		return nil, err
	}
	if err := m.loadTokenizer(m.Dir); err != nil {
		return nil, err
	}
	m.HasScheduler = fileExists(m.Path(SchedulerConfig))
	return m, nil
}

// fit validates the configs and checks that the networks fit together (the
// UNet's cross_attention_dim is the text encoder's width; its input and
// output channels are the VAE's latent channels).
func (m *Model) fit() error {
	abs := m.Dir
	if err := m.UNet.Validate(); err != nil {
		return fmt.Errorf("base model %s: UNet: %w", abs, err)
	}
	if err := m.VAE.Validate(); err != nil {
		return fmt.Errorf("base model %s: VAE: %w", abs, err)
	}
	if m.Text.LayerNormEps == 0 {
		m.Text.LayerNormEps = 1e-5
	}
	if m.Text.HiddenAct == "" {
		m.Text.HiddenAct = textenc.QuickGELU
	}
	if err := m.Text.Validate(); err != nil {
		return fmt.Errorf("base model %s: text encoder: %w", abs, err)
	}
	switch {
	case m.UNet.CrossAttentionDim != m.Text.HiddenSize:
		return fmt.Errorf("base model %s: the UNet's cross_attention_dim %d is not the text encoder's hidden_size %d", abs, m.UNet.CrossAttentionDim, m.Text.HiddenSize)
	case m.UNet.InChannels != m.VAE.LatentChannels || m.UNet.OutChannels != m.VAE.LatentChannels:
		return fmt.Errorf("base model %s: the UNet takes %d and gives %d channels, the VAE's latent has %d", abs, m.UNet.InChannels, m.UNet.OutChannels, m.VAE.LatentChannels)
	case m.VAE.ScalingFactor <= 0:
		return fmt.Errorf("base model %s: the VAE config has no scaling_factor (SD 1.x's is 0.18215)", abs)
	case m.Text.MaxPositionEmbeddings < defaultContextLen:
		return fmt.Errorf("base model %s: the text encoder has %d positions, SD's context needs %d", abs, m.Text.MaxPositionEmbeddings, defaultContextLen)
	}
	return nil
}

// loadTokenizer reads dir/tokenizer and its end token, checked against
// the text encoder's vocabulary.
func (m *Model) loadTokenizer(dir string) error {
	var err error
	if m.Tokenizer, err = clip.LoadDir(filepath.Join(dir, TokenizerDir)); err != nil {
		return fmt.Errorf("base model %s: tokenizer: %w", m.Dir, err)
	}
	var vocab map[string]int
	if err := readJSON(filepath.Join(dir, filepath.FromSlash(TokenizerVocab)), &vocab); err != nil {
		return err
	}
	end, ok := vocab[endOfTextToken]
	if !ok {
		return fmt.Errorf("base model %s: %s has no %s token", m.Dir, TokenizerVocab, endOfTextToken)
	}
	if end >= m.Text.VocabSize {
		return fmt.Errorf("base model %s: the tokenizer's end token %d is outside the text encoder's vocab_size %d", m.Dir, end, m.Text.VocabSize)
	}
	m.EndToken = end
	return nil
}

// Path is a file of the folder, by its slash-separated name.
func (m *Model) Path(file string) string { return filepath.Join(m.Dir, filepath.FromSlash(file)) }

// ContextLength is SD's 77 tokens.
func (m *Model) ContextLength() int { return defaultContextLen }

// UNetWeights reads the UNet's weights, checked against its config, named
// as the trainer names them (model.DenoiserPrefix + diffusers' name).
func (m *Model) UNetWeights() (model.Weights, error) {
	u, err := m.src.unet(m)
	if err != nil {
		return nil, err
	}
	w := make(model.Weights, len(u))
	for name, x := range u {
		w[model.DenoiserPrefix+name] = x
	}
	return w, nil
}

// RawUNetWeights reads the UNet's weights under diffusers' names, without
// the trainer's prefix.
func (m *Model) RawUNetWeights() (model.Weights, error) { return m.src.unet(m) }

// VAEWeights reads the VAE's weights, checked against its config.
func (m *Model) VAEWeights() (model.Weights, error) { return m.src.vae(m) }

// TextWeights reads the text encoder's weights, checked against its config.
func (m *Model) TextWeights() (model.Weights, error) { return m.src.text(m) }

// WriteTokenizer writes the base's tokenizer (tokenizer/vocab.json and
// merges.txt) into dir.
func (m *Model) WriteTokenizer(dir string) error { return m.src.writeTokenizer(m, dir) }

// Files are the files the base's frozen parts (VAE, text encoder,
// tokenizer) are read from: a prepared dataset is valid while they are
// unchanged.
func (m *Model) Files() []string { return m.src.files(m) }

// diffusersSource reads a diffusers folder's safetensors files.
type diffusersSource struct{}

func (diffusersSource) unet(m *Model) (model.Weights, error) {
	return sd.LoadWeights(m.Path(UNetWeights), m.UNet, "")
}

func (diffusersSource) vae(m *Model) (model.Weights, error) {
	return vae.LoadWeights(m.Path(VAEWeights), m.VAE, "")
}

func (diffusersSource) text(m *Model) (model.Weights, error) {
	return textenc.LoadWeights(m.Path(TextWeights), m.Text, "")
}

func (diffusersSource) writeTokenizer(m *Model, dir string) error {
	return copyTokenizer(m.Dir, dir)
}

func (diffusersSource) files(m *Model) []string {
	return []string{m.Path(VAEConfig), m.Path(VAEWeights), m.Path(TextConfig), m.Path(TextWeights), m.Path(TokenizerVocab), m.Path(TokenizerMerges)}
}

// copyTokenizer copies from/tokenizer/{vocab.json,merges.txt} to dir/tokenizer/.
func copyTokenizer(from, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, TokenizerDir), 0o755); err != nil {
		return err
	}
	for _, f := range []string{TokenizerVocab, TokenizerMerges} {
		b, err := os.ReadFile(filepath.Join(from, filepath.FromSlash(f)))
		if err != nil {
			return fmt.Errorf("base model: tokenizer: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("base model: %s is missing (is this a diffusers SD 1.x folder?)", path)
	}
	if err != nil {
		return fmt.Errorf("base model: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("base model: %s: %w", path, err)
	}
	return nil
}

// Tiny returns the configs of a CPU-sized base that fits together: the
// tiny UNet (context 32), VAE and CLIP text model, the text vocabulary
// sized for ml/sdmodel's small tokenizer (WriteTiny's).
func Tiny() (sd.Config, vae.Config, textenc.Config) {
	return sd.Tiny(), vae.Tiny(), textenc.Tiny()
}

// WriteTiny writes a random tiny base (Tiny's configs, edited by edit when
// not nil) with ml/sdmodel's small byte-level tokenizer: what tests and
// smoke runs fine-tune when no SD weights are at hand.
func WriteTiny(dir string, seed uint64, edit func(*sd.Config, *vae.Config, *textenc.Config)) error {
	tok, err := os.MkdirTemp("", "face0-tiny-tokenizer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tok)
	if err := sdmodel.Generate(tok, sdmodel.TinyConfig()); err != nil {
		return err
	}
	gen, err := sdmodel.Load(tok)
	if err != nil {
		return err
	}
	u, v, t := Tiny()
	t.VocabSize = gen.Manifest.PadToken + 1
	if edit != nil {
		edit(&u, &v, &t)
	}
	return WriteRandom(dir, u, v, t, filepath.Join(tok, TokenizerDir), seed)
}

// WriteRandom writes a base model folder with seeded random weights for the
// given configs and the tokenizer files (vocab.json, merges.txt) of
// tokenizerDir: a stand-in base for smoke tests and CI, where no
// pretrained SD weights exist. The text config's vocab_size must cover the
// tokenizer.
func WriteRandom(dir string, u sd.Config, v vae.Config, t textenc.Config, tokenizerDir string, seed uint64) error {
	for _, c := range []struct {
		file string
		cfg  any
	}{{UNetConfig, u}, {VAEConfig, v}, {TextConfig, t}} {
		b, err := json.MarshalIndent(c.cfg, "", "  ")
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(c.file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		file string
		w    model.Weights
	}{{UNetWeights, sd.NewWeights(u, seed)}, {VAEWeights, vae.NewWeights(v, seed+1)}, {TextWeights, textenc.NewWeights(t, seed+2)}} {
		if err := w.w.Save(filepath.Join(dir, filepath.FromSlash(w.file)), nil); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, TokenizerDir), 0o755); err != nil {
		return err
	}
	for _, f := range []string{"vocab.json", "merges.txt"} {
		b, err := os.ReadFile(filepath.Join(tokenizerDir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, TokenizerDir, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
