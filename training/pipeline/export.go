// Package pipeline runs a whole Face0 training job: prepare a dataset
// folder (training/data), train (training), and export a model folder that
// the face0 pack loads (ml/sdmodel layout). The Train node and `face0 train`
// are thin wrappers around Run.
package pipeline

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/vae"
)

// File names an exported model adds to ml/sdmodel's layout.
const (
	// MixtureFile is where the face0 pack's RandomEmbedding looks for the
	// embedding distribution (nodes/face0.MixtureFile).
	MixtureFile = "face0/embedding_mixture.json"
	// TrainingFile records how the model was made (not read by the pack).
	TrainingFile = "face0/training.json"
)

// Provenance is face0/training.json.
type Provenance struct {
	Format      string          `json:"format"`
	Created     time.Time       `json:"created"`
	Dataset     string          `json:"dataset"`
	Examples    int             `json:"examples"`
	Steps       int             `json:"steps"`
	Weights     string          `json:"weights"` // "ema" or "current"
	Training    training.Config `json:"training"`
	Prepared    data.Info       `json:"prepared"`
	FinalLoss   float64         `json:"final_loss"`
	TextEncoder string          `json:"text_encoder"`
	Latent      string          `json:"latent"`
}

// Export writes a complete model folder at dir: the frozen text encoder and
// tokenizer the dataset was encoded with (copied from the prepared folder),
// the trained denoiser as unet/model.onnx and the projection as
// face0/projection.onnx (training/model.WriteONNX), the latent's exact
// inverse (or the base model's VAE decoder) as vae_decoder/model.onnx, SD
// 1.x's scheduler config (or the base's), face0.json,
// the embedding mixture and training.json. The folder is written beside dir
// and swapped in only once sdmodel.Validate accepts it, so a model in use
// is never seen half-written.
func Export(dir, name string, prep *data.Prepared, cfg training.Config, w model.Weights, prov Provenance) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", abs, os.Getpid())
	_ = os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	if err := copyTree(prep.EncoderPath(), tmp); err != nil {
		return fmt.Errorf("export: copy the text encoder: %w", err)
	}
	if err := cfg.WriteONNX(tmp, w); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var bm *base.Model
	if prep.Info.Base != "" {
		// The base's frozen VAE decoder and its scheduler.
		if bm, err = base.Open(prep.Info.Base); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		vw, err := bm.VAEWeights()
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		dec, err := vae.ExportDecoder(bm.VAE, vw)
		if err != nil {
			return fmt.Errorf("export: vae decoder: %w", err)
		}
		if err := layers.Save(dec, filepath.Join(tmp, filepath.FromSlash(sdmodel.VAEDecoderFile)), "vae"); err != nil {
			return fmt.Errorf("export: vae decoder: %w", err)
		}
		if bm.HasScheduler {
			if err := copyFile(bm.Path(base.SchedulerConfig), filepath.Join(tmp, filepath.FromSlash(sdmodel.SchedulerFile))); err != nil {
				return fmt.Errorf("export: scheduler: %w", err)
			}
		}
	} else {
		dec, err := prep.Latent().Decoder()
		if err != nil {
			return fmt.Errorf("export: vae decoder: %w", err)
		}
		dec.SetMeta("face0.component", "vae_decoder")
		dec.SetMeta("face0.latent", fmt.Sprintf("space-to-depth %d of %dx%d RGB in [-1,1]", prep.Info.Factor, prep.Info.ImageSize, prep.Info.ImageSize))
		if err := dec.Save(filepath.Join(tmp, filepath.FromSlash(sdmodel.VAEDecoderFile))); err != nil {
			return fmt.Errorf("export: vae decoder: %w", err)
		}
	}

	var man sdmodel.Manifest
	raw, err := os.ReadFile(filepath.Join(tmp, sdmodel.ManifestFile))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	man.Name = name
	man.Embedding.Space = prep.Info.Space
	man.Embedding.Dim = prep.Info.Dim
	man.FaceTokens = cfg.Model.FaceTokens
	man.FaceTokenStart = cfg.Model.FaceTokenStart()
	man.TextWidth = cfg.Model.TextWidth
	man.ContextLength = cfg.Model.ContextLength
	man.LatentChannels = cfg.Model.LatentChannels
	man.VAEScaleFactor = prep.Info.Factor
	man.LatentScale = prep.Info.LatentScale
	man.SampleSize = prep.Info.ImageSize
	man.Guidance.W, man.Guidance.C, man.Guidance.A = 7.5, 1, 0
	if err := writeJSON(filepath.Join(tmp, sdmodel.ManifestFile), man); err != nil {
		return err
	}
	if _, err := os.Stat(prep.MixturePath()); err == nil {
		if err := copyFile(prep.MixturePath(), filepath.Join(tmp, filepath.FromSlash(MixtureFile))); err != nil {
			return fmt.Errorf("export: mixture: %w", err)
		}
	}
	prov.Format = "face0-training/1"
	prov.Created = time.Now().UTC().Round(time.Second)
	prov.Training = cfg
	prov.Training.CheckpointDir = ""
	prov.Prepared = prep.Info
	prov.Prepared.Files, prov.Prepared.Problems = nil, nil
	prov.Examples = prep.Info.Count
	in := prep.Info
	switch tp := in.TextPretrain; {
	case bm != nil:
		prov.TextEncoder = fmt.Sprintf("the base model's CLIP text encoder and tokenizer (%s), frozen", bm.Dir)
		prov.Latent = fmt.Sprintf("the base model's VAE (%s): %dx%d RGB to %dx%dx%d latent means, times its scaling_factor %g", bm.Dir, in.ImageSize, in.ImageSize, in.LatentChannels, in.LatentSize, in.LatentSize, in.LatentScale)
	case tp != nil:
		prov.TextEncoder = fmt.Sprintf("CLIP text model (training/textenc), pretrained contrastively on the dataset's caption-image pairs (training/textclip: %d steps, batch %d; held-out caption->image retrieval %.1f%% against chance %.1f%%), then frozen; vocabulary %s",
			tp.Steps, tp.Batch, 100*tp.RetrievalAfter, 100*tp.RetrievalChance, in.Vocab)
	default:
		prov.TextEncoder = fmt.Sprintf("ml/sdmodel's generated CLIP-like encoder, seeded random weights, frozen (never trained); vocabulary %s", in.Vocab)
	}
	if bm == nil {
		prov.Latent = fmt.Sprintf("lossless: %dx%d RGB scaled to [-1,1], space-to-depth %d -> %d channels of %dx%d, times latent_scale %g", in.ImageSize, in.ImageSize, in.Factor, in.LatentChannels, in.LatentSize, in.LatentSize, in.LatentScale)
	}
	if err := writeJSON(filepath.Join(tmp, filepath.FromSlash(TrainingFile)), prov); err != nil {
		return err
	}
	// ml/onnx writes through temporary files (mode 0600); a model folder
	// is read by whoever runs the server, so make it world-readable.
	_ = filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_ = os.Chmod(p, 0o644)
		}
		return nil
	})
	if err := sdmodel.Validate(tmp); err != nil {
		return fmt.Errorf("export: the exported folder does not check out: %w", err)
	}
	old := fmt.Sprintf("%s.old-%d", abs, os.Getpid())
	if _, err := os.Stat(abs); err == nil {
		if err := os.Rename(abs, old); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := os.Rename(tmp, abs); err != nil {
		_ = os.Rename(old, abs)
		return fmt.Errorf("export: %w", err)
	}
	return os.RemoveAll(old)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
