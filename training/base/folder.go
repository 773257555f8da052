package base

import (
	"fmt"

	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// Files a face0 model folder holds to be a base again (Import writes them
// beside the ONNX files): each network's diffusers config, and the VAE
// encoder, which only training uses.
const (
	ModelVAEConfig    = "vae_decoder/config.json"
	ModelVAEEncoder   = vae.EncoderFile
	modelUNetConfig   = UNetConfig // unet/config.json, beside unet/model.onnx
	modelTextConfig   = TextConfig // text_encoder/config.json
	modelUNetWeights  = sdmodel.UNetFile
	modelTextWeights  = sdmodel.TextEncoderFile
	modelVAEDecoderWt = sdmodel.VAEDecoderFile
)

// modelSource reads a face0 model folder's ONNX weights back.
type modelSource struct{}

// openModelFolder opens a face0 model folder that Import wrote.
func openModelFolder(abs string) (*Model, error) {
	m := &Model{Dir: abs, Kind: KindModel, src: modelSource{}}
	var missing []string
	for _, f := range []string{modelUNetConfig, modelTextConfig, ModelVAEConfig, modelUNetWeights, modelTextWeights, modelVAEDecoderWt, ModelVAEEncoder, TokenizerVocab, TokenizerMerges} {
		if !fileExists(m.Path(f)) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("base model %s: this face0 model folder cannot be a base: missing %v (face0 models import writes folders that can; a model trained from scratch has no SD networks to fine-tune)", abs, missing)
	}
	for _, c := range []struct {
		file string
		into any
	}{{modelUNetConfig, &m.UNet}, {ModelVAEConfig, &m.VAE}, {modelTextConfig, &m.Text}} {
		if err := readJSON(m.Path(c.file), c.into); err != nil {
			return nil, err
		}
	}
	if err := m.fit(); err != nil {
		return nil, err
	}
	if err := m.loadTokenizer(abs); err != nil {
		return nil, err
	}
	m.HasScheduler = fileExists(m.Path(SchedulerConfig))
	return m, nil
}

func (modelSource) unet(m *Model) (model.Weights, error) {
	return sd.ReadONNX(m.Path(modelUNetWeights), m.UNet)
}

func (modelSource) vae(m *Model) (model.Weights, error) { return vae.ReadONNX(m.Dir, m.VAE) }

func (modelSource) text(m *Model) (model.Weights, error) {
	return textenc.ReadONNX(m.Path(modelTextWeights), m.Text)
}

func (modelSource) writeTokenizer(m *Model, dir string) error { return copyTokenizer(m.Dir, dir) }

func (modelSource) files(m *Model) []string {
	var out []string
	for _, f := range []string{ModelVAEConfig, modelVAEDecoderWt, ModelVAEEncoder, modelTextConfig, modelTextWeights, TokenizerVocab, TokenizerMerges} {
		out = append(out, m.Path(f))
		// Side files of large weights change with their model.
		if data := m.Path(f) + ".data"; fileExists(data) {
			out = append(out, data)
		}
	}
	return out
}
