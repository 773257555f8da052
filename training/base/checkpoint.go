package base

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// Arch is the three networks' configs.
type Arch struct {
	UNet sd.Config      `json:"unet"`
	VAE  vae.Config     `json:"vae"`
	Text textenc.Config `json:"text_encoder"`
}

// SD1 is Stable Diffusion 1.x (v1-4, v1-5): the architecture of every
// single-file checkpoint that names no other.
func SD1() Arch { return Arch{UNet: sd.SD1(), VAE: vae.SD1(), Text: textenc.SD1()} }

// ArchMeta is the safetensors __metadata__ key in which WriteCheckpoint
// records an architecture other than SD1's (a tiny one, for tests): what
// the keys and shapes cannot tell (GroupNorm groups, attention heads).
const ArchMeta = "face0.arch"

// CheckpointOptions adjust how a single-file checkpoint is opened.
type CheckpointOptions struct {
	// EMA chooses the UNet copy when the file has two (default: the EMA
	// weights).
	EMA ckpt.EMA
}

// OpenCheckpoint opens a single-file checkpoint as a base with options.
func OpenCheckpoint(path string, o CheckpointOptions) (*Model, error) {
	return openCheckpoint(path, o)
}

// checkpointSource reads a single-file checkpoint, reopening it for each
// network so that a Model holds no open file.
type checkpointSource struct {
	o       CheckpointOptions
	layers  int
	levels  int
	usedEMA bool
	dtypes  string
	unknown []string
	ignored int
}

func openCheckpoint(abs string, o CheckpointOptions) (*Model, error) {
	c, err := ckpt.Open(abs, ckpt.Options{EMA: o.EMA})
	if err != nil {
		return nil, fmt.Errorf("base model: %w", err)
	}
	defer c.Close()
	arch := SD1()
	if meta := c.Metadata()[ArchMeta]; meta != "" {
		if err := json.Unmarshal([]byte(meta), &arch); err != nil {
			return nil, fmt.Errorf("base model %s: metadata %s: %w", abs, ArchMeta, err)
		}
	}
	src := &checkpointSource{o: o, layers: c.Layers, levels: c.VAELevels, usedEMA: c.UsedEMA, unknown: c.Unknown, ignored: len(c.Ignored)}
	var dts []string
	for dt, n := range c.DTypes() {
		dts = append(dts, fmt.Sprintf("%d %s", n, dt))
	}
	slices.Sort(dts)
	src.dtypes = strings.Join(dts, ", ")
	m := &Model{Dir: abs, Kind: KindCheckpoint, UNet: arch.UNet, VAE: arch.VAE, Text: arch.Text, src: src}
	if err := m.fit(); err != nil {
		return nil, err
	}
	// Every tensor's name and shape, from the header, before any is read.
	var problems []string
	for _, p := range []struct {
		part  ckpt.Part
		specs []model.ParamSpec
	}{{ckpt.UNet, sd.Specs(m.UNet)}, {ckpt.VAE, vae.Specs(m.VAE)}, {ckpt.TextEncoder, textenc.Specs(m.Text)}} {
		if err := checkPart(c, p.part, p.specs); err != "" {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("base model %s is not the SD 1.x checkpoint it looks like: %s", abs, strings.Join(problems, "; "))
	}
	// A single file carries no tokenizer: SD 1.x's is CLIP's.
	tmp, err := os.MkdirTemp("", "face0-clip-tokenizer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := sdmodel.WriteCLIPTokenizer(tmp); err != nil {
		return nil, err
	}
	if err := m.loadTokenizer(tmp); err != nil {
		return nil, err
	}
	return m, nil
}

// checkPart compares a network's tensors in the file with its specs and
// names every missing, unexpected and mis-shaped one, with both its
// diffusers name and the checkpoint's key.
func checkPart(c *ckpt.Checkpoint, p ckpt.Part, specs []model.ParamSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	keys, err := ckpt.Keys(p, names, c.Layers, c.VAELevels)
	if err != nil {
		keys = map[string]string{}
	}
	want := map[string]bool{}
	var missing, shape, extra []string
	for _, s := range specs {
		want[s.Name] = true
		info, ok := c.Info(p, s.Name)
		key := keys[s.Name]
		if c.UsedEMA && p == ckpt.UNet && key != "" {
			key = ckpt.EMAKey(key)
		}
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s (%s)", key, s.Name))
		case !slices.Equal(info.Shape, s.Shape):
			shape = append(shape, fmt.Sprintf("%s (%s) is %v, want %v", c.Parts[p][s.Name].Key, s.Name, info.Shape, s.Shape))
		}
	}
	for _, n := range c.Names(p) {
		if !want[n] {
			extra = append(extra, fmt.Sprintf("%s (%s)", c.Parts[p][n].Key, n))
		}
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d missing: %s", len(missing), strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d unexpected: %s", len(extra), strings.Join(extra, ", ")))
	}
	if len(shape) > 0 {
		parts = append(parts, fmt.Sprintf("%d with the wrong shape: %s", len(shape), strings.Join(shape, ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("its %s: %s", p, strings.Join(parts, "; "))
}

// read reads every tensor of specs from one network of the file.
func (s *checkpointSource) read(m *Model, p ckpt.Part, specs []model.ParamSpec, what string) (model.Weights, error) {
	c, err := ckpt.Open(m.Dir, ckpt.Options{EMA: s.o.EMA})
	if err != nil {
		return nil, fmt.Errorf("base model: %w", err)
	}
	defer c.Close()
	w := make(model.Weights, len(specs))
	for _, sp := range specs {
		data, shape, err := c.Float32(p, sp.Name)
		if err != nil {
			return nil, fmt.Errorf("base model: %w", err)
		}
		w[sp.Name] = &model.Tensor{Shape: shape, Data: data}
	}
	if err := layers.Check(w, specs, what+": "+m.Dir); err != nil {
		return nil, err
	}
	return w, nil
}

func (s *checkpointSource) unet(m *Model) (model.Weights, error) {
	return s.read(m, ckpt.UNet, sd.Specs(m.UNet), "base model: the UNet")
}

func (s *checkpointSource) vae(m *Model) (model.Weights, error) {
	return s.read(m, ckpt.VAE, vae.Specs(m.VAE), "base model: the VAE")
}

func (s *checkpointSource) text(m *Model) (model.Weights, error) {
	return s.read(m, ckpt.TextEncoder, textenc.Specs(m.Text), "base model: the text encoder")
}

func (s *checkpointSource) writeTokenizer(_ *Model, dir string) error {
	_, err := sdmodel.WriteCLIPTokenizer(dir)
	return err
}

func (s *checkpointSource) files(m *Model) []string { return []string{m.Dir} }
