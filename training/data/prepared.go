package data

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
)

// Cache files inside a prepared folder.
const (
	InfoFile     = "info.json"
	ExamplesFile = "examples.safetensors"
	EncoderDir   = "encoder"          // the frozen text encoder + tokenizer (a complete ml/sdmodel folder)
	MixtureFile  = "mixture.json"     // ml/face0 Mixture over the training embeddings
	InfoFormat   = "face0-prepared/2" // 2: adds the empty prompt's context
)

// Info describes a prepared dataset (info.json).
type Info struct {
	Format  string `json:"format"`
	Key     string `json:"key"` // hash of the listing and options; a different key re-encodes
	Dataset string `json:"dataset"`

	Count    int       `json:"count"`
	Files    []string  `json:"files"`
	Problems []Problem `json:"problems,omitempty"`
	NoFace   int       `json:"no_face"`   // examples kept with zeroed face tokens
	Truncate int       `json:"truncated"` // captions longer than the text positions before the face tokens

	ImageSize      int     `json:"image_size"`
	Factor         int     `json:"factor"`
	LatentChannels int     `json:"latent_channels"`
	LatentSize     int     `json:"latent_size"`
	LatentMean     float64 `json:"latent_mean"`
	LatentStd      float64 `json:"latent_std"`
	// LatentScale multiplies the stored latents into the trainer's (and the
	// sampler's) space: 1/LatentStd rounded, so those are about unit variance.
	LatentScale float64 `json:"latent_scale"`

	FaceSource string `json:"face_source"` // precomputed or detect
	Space      string `json:"embedding_space"`
	Dim        int    `json:"embedding_dim"`

	TextWidth     int    `json:"text_width"`
	ContextLength int    `json:"context_length"`
	PadToken      int    `json:"pad_token"`
	Vocab         string `json:"vocab"` // "clip", "tiny" or "base"
	// Base is the base model folder whose VAE and text encoder prepared the
	// dataset (Options.Base); empty for the space-to-depth latent.
	Base string `json:"base,omitempty"`
	// TextPretrain reports the text encoder's contrastive pretraining
	// (Options.TextPretrain); absent when the encoder kept random weights.
	TextPretrain *TextPretrainInfo `json:"text_pretrain,omitempty"`

	Seconds float64 `json:"seconds"` // time to prepare
}

// TextPretrainInfo is what the text encoder's pretraining did: its settings,
// its final loss and caption→image retrieval on held-out pairs (top-1 among
// a batch: the best-scoring image has the caption's own caption) before and
// after, against chance.
type TextPretrainInfo struct {
	Steps           int     `json:"steps"`
	Batch           int     `json:"batch"`
	LR              float64 `json:"lr"`
	Pairs           int     `json:"pairs"`
	HeldOutPairs    int     `json:"held_out_pairs"`
	FinalLoss       float64 `json:"final_loss"`
	RetrievalBefore float64 `json:"retrieval_before"`
	RetrievalAfter  float64 `json:"retrieval_after"`
	RetrievalChance float64 `json:"retrieval_chance"`
	Seconds         float64 `json:"seconds"`
}

// Prepared is an encoded dataset held in memory; it is a training.Dataset.
type Prepared struct {
	Dir  string
	Info Info

	latents, contexts, embeddings []float32
	face                          []float32 // 1: has a face, 0: none
	empty                         []float32 // the frozen text encoder's output for "" [L,D]
}

// EmptyContext implements training.EmptyPrompter: the frozen text encoder's
// last hidden state for the empty prompt, tokenised as at sampling time (the
// context a dropped caption is replaced with, Config.TextDropProb).
func (p *Prepared) EmptyContext() []float32 {
	return p.empty[:len(p.empty):len(p.empty)]
}

// Len implements training.Dataset.
func (p *Prepared) Len() int { return p.Info.Count }

// Example implements training.Dataset: the latent times LatentScale, the
// frozen text encoder's last hidden state, the face embedding.
func (p *Prepared) Example(i int) (training.Example, error) {
	if i < 0 || i >= p.Info.Count {
		return training.Example{}, fmt.Errorf("data: example %d out of range [0, %d)", i, p.Info.Count)
	}
	nl := p.Info.LatentChannels * p.Info.LatentSize * p.Info.LatentSize
	nc := p.Info.ContextLength * p.Info.TextWidth
	lat := make([]float32, nl)
	s := float32(p.Info.LatentScale)
	for j, v := range p.latents[i*nl : (i+1)*nl] {
		lat[j] = v * s
	}
	return training.Example{
		Latent:    lat,
		Context:   p.contexts[i*nc : (i+1)*nc : (i+1)*nc],
		Embedding: p.embeddings[i*p.Info.Dim : (i+1)*p.Info.Dim : (i+1)*p.Info.Dim],
		NoFace:    p.face[i] == 0,
	}, nil
}

// RawLatent is example i's stored latent (unscaled, values in [-1, 1]).
func (p *Prepared) RawLatent(i int) []float32 {
	nl := p.Info.LatentChannels * p.Info.LatentSize * p.Info.LatentSize
	return p.latents[i*nl : (i+1)*nl : (i+1)*nl]
}

// Latent is the latent layout the dataset was encoded with.
func (p *Prepared) Latent() Latent { return Latent{Size: p.Info.ImageSize, Factor: p.Info.Factor} }

// EncoderPath is the frozen text encoder's model folder (copy its
// text_encoder/ and tokenizer/ into an exported model).
func (p *Prepared) EncoderPath() string { return filepath.Join(p.Dir, EncoderDir) }

// MixturePath is the fitted embedding mixture (absent when no example has a face).
func (p *Prepared) MixturePath() string { return filepath.Join(p.Dir, MixtureFile) }

// Embeddings are the face embeddings of the examples that have a face.
func (p *Prepared) Embeddings() [][]float32 {
	var out [][]float32
	for i := range p.Info.Count {
		if p.face[i] != 0 {
			out = append(out, p.embeddings[i*p.Info.Dim:(i+1)*p.Info.Dim])
		}
	}
	return out
}

// save writes the examples and info.json into dir, the folder Load reads.
func (p *Prepared) save(dir string) error {
	i := p.Info
	ts := map[string]safetensors.Tensor{
		"latents":       safetensors.FromFloat32([]int{i.Count, i.LatentChannels, i.LatentSize, i.LatentSize}, p.latents),
		"contexts":      safetensors.FromFloat32([]int{i.Count, i.ContextLength, i.TextWidth}, p.contexts),
		"embeddings":    safetensors.FromFloat32([]int{i.Count, i.Dim}, p.embeddings),
		"face":          safetensors.FromFloat32([]int{i.Count}, p.face),
		"empty_context": safetensors.FromFloat32([]int{i.ContextLength, i.TextWidth}, p.empty),
	}
	if err := safetensors.Write(filepath.Join(dir, ExamplesFile), ts, safetensors.WithMetadata(map[string]string{"format": InfoFormat})); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, InfoFile), append(b, '\n'), 0o644)
}

// Load reads a prepared folder written by Prepare.
func Load(dir string) (*Prepared, error) {
	raw, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	p := &Prepared{Dir: dir}
	if err := json.Unmarshal(raw, &p.Info); err != nil {
		return nil, fmt.Errorf("data: %s: %w", filepath.Join(dir, InfoFile), err)
	}
	if p.Info.Format != InfoFormat {
		return nil, fmt.Errorf("data: %s: format %q, want %q", dir, p.Info.Format, InfoFormat)
	}
	f, err := safetensors.Open(filepath.Join(dir, ExamplesFile))
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	i := p.Info
	for _, t := range []struct {
		name string
		dst  *[]float32
		n    int
	}{
		{"latents", &p.latents, i.Count * i.LatentChannels * i.LatentSize * i.LatentSize},
		{"contexts", &p.contexts, i.Count * i.ContextLength * i.TextWidth},
		{"embeddings", &p.embeddings, i.Count * i.Dim},
		{"face", &p.face, i.Count},
		{"empty_context", &p.empty, i.ContextLength * i.TextWidth},
	} {
		v, _, err := f.Float32(t.name)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if len(v) != t.n {
			return nil, fmt.Errorf("data: %s: %s has %d values, info.json says %d", dir, t.name, len(v), t.n)
		}
		*t.dst = v
	}
	if _, err := os.Stat(filepath.Join(dir, EncoderDir, sdmodel.TextEncoderFile)); err != nil {
		return nil, fmt.Errorf("data: %s: the frozen text encoder is missing: %w", dir, err)
	}
	return p, nil
}
