// Package training trains Face0 models with GoMLX: the Face0 objective
// (Valevski et al. 2023, Sec. 2.1 and 2.3) over the networks of
// training/model, AdamW with EMA and gradient accumulation, and checkpoints
// that resume a killed run exactly (same data order, same random streams,
// bit-identical losses).
//
// See README.md in this folder for the architecture, measured speeds and
// what is left.
package training

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom

	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
)

// Config is a training run's configuration. Start from DefaultConfig: zero
// values are taken literally (a zero FaceDropProb never drops the face).
type Config struct {
	// Model sizes the projection MLP, the latent and the context, and (when
	// UNet is nil) the latent-patch transformer denoiser.
	Model model.Config `json:"model"`
	// UNet, when set, makes Stable Diffusion 1.x's UNet (training/sd) the
	// denoiser instead of Model's transformer: the paper's setting, usually
	// from a base model's weights (New's init). Its weights are named
	// "unet." + diffusers' names. It predicts ε (Model.Output must be
	// "eps", LossWeight "eps"); its in/out channels must be
	// Model.LatentChannels, its cross-attention width Model.TextWidth.
	UNet *sd.Config `json:"unet,omitempty"`
	// Conv picks the UNet's convolution build: sd.ConvIm2col (the default,
	// needed by the pure-Go backend, which cannot take gradients of a
	// native convolution) or sd.ConvNative (XLA backends).
	Conv sd.ConvImpl `json:"conv,omitempty"`

	// Seed fixes the initial weights, the data order and every random draw
	// (timesteps, noise, face drops).
	Seed uint64 `json:"seed"`

	// BatchSize examples per micro-batch; GradAccum micro-batches per
	// optimizer step (effective batch BatchSize·GradAccum).
	BatchSize int `json:"batch_size"`
	GradAccum int `json:"grad_accum"`

	// AdamW (torch.optim.AdamW semantics: decoupled weight decay).
	LR          float64 `json:"lr"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	// MaxGradNorm clips the global gradient norm (0: no clipping).
	MaxGradNorm float64 `json:"max_grad_norm"`

	// EMADecay is the EMA's maximum decay (the paper's 0.9999), ramped up as
	// diffusers' EMAModel does: min(EMADecay, (1+s)/(10+s)) after step s.
	// 0 disables the EMA.
	EMADecay float64 `json:"ema_decay"`

	// FaceDropProb is the probability that a sample's projected face tokens
	// are zeroed (the paper's 0.1, for classifier-free guidance). The text
	// is never dropped when TextDropProb is 0.
	FaceDropProb float64 `json:"face_drop_prob"`

	// TextDropProb is the probability that a sample's text context is
	// replaced by the empty prompt's (the frozen text encoder's output for
	// ""), independently of the face drop. The paper never drops the text
	// (0, the default) because it fine-tunes SD, whose unconditional branch
	// already exists; a model trained from scratch has otherwise never seen
	// the empty prompt, so the unconditional and face-only branches of the
	// three-way guidance would be untrained. A run with TextDropProb > 0
	// needs a Dataset that implements EmptyPrompter.
	TextDropProb float64 `json:"text_drop_prob,omitempty"`

	// LossWeight weighs each example's ε-MSE by its timestep: "" or "eps"
	// (the paper's objective: uniform ε-MSE), or "v": divided by ᾱ_t, which
	// with the "v-skip" output is exactly the MSE of the standard v target
	// √ᾱ·ε − √(1−ᾱ)·x₀ (there ε̂−ε = √ᾱ·(v̂−v)). Uniform ε-MSE gives the high-noise steps,
	// where ᾱ ≈ 0.005, almost no weight on the clean-image estimate, so a
	// model trained from scratch never learns the global layout it must
	// commit to in the first sampling steps (measured: samples of
	// independent 4×4 colour blocks). Fine-tuning SD keeps "eps".
	LossWeight string `json:"loss_weight,omitempty"`

	// AdapterOnly trains the projection MLP alone, the denoiser frozen; the
	// paper trains both jointly (false).
	AdapterOnly bool `json:"adapter_only"`

	// The training noise schedule (SD's: 1000 steps, scaled_linear
	// 0.00085..0.012). Timesteps are drawn uniformly from 0..NumTrainTimesteps-1.
	NumTrainTimesteps int     `json:"num_train_timesteps"`
	BetaStart         float64 `json:"beta_start"`
	BetaEnd           float64 `json:"beta_end"`
	BetaSchedule      string  `json:"beta_schedule"`

	// Checkpoints: every CheckpointEvery optimizer steps into CheckpointDir
	// (empty or 0: none), keeping the newest KeepCheckpoints (0: all).
	CheckpointDir   string `json:"checkpoint_dir"`
	CheckpointEvery int    `json:"checkpoint_every"`
	KeepCheckpoints int    `json:"keep_checkpoints"`
}

// Config.LossWeight values.
const (
	LossWeightEps = "eps"
	LossWeightV   = "v"
)

// DefaultConfig is the paper's recipe on the tiny model: lr 2e-5, EMA
// 0.9999, 10% face drop, joint training.
func DefaultConfig() Config {
	s := sched.SD15(sched.DDIM)
	return Config{
		Model:             model.Tiny(),
		Seed:              0,
		BatchSize:         8,
		GradAccum:         1,
		LR:                2e-5,
		Beta1:             0.9,
		Beta2:             0.999,
		Eps:               1e-8,
		WeightDecay:       1e-2,
		MaxGradNorm:       1,
		EMADecay:          0.9999,
		FaceDropProb:      0.1,
		NumTrainTimesteps: s.NumTrainTimesteps,
		BetaStart:         s.BetaStart,
		BetaEnd:           s.BetaEnd,
		BetaSchedule:      s.BetaSchedule,
		CheckpointEvery:   1000,
		KeepCheckpoints:   3,
	}
}

// Validate reports the first unusable field.
func (c Config) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return err
	}
	switch {
	case c.BatchSize <= 0:
		return fmt.Errorf("training config: batch_size %d, want > 0", c.BatchSize)
	case c.GradAccum <= 0:
		return fmt.Errorf("training config: grad_accum %d, want > 0", c.GradAccum)
	case !(c.LR > 0):
		return fmt.Errorf("training config: lr %g, want > 0", c.LR)
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("training config: betas (%g, %g) must lie in [0, 1)", c.Beta1, c.Beta2)
	case !(c.Eps > 0):
		return fmt.Errorf("training config: eps %g, want > 0", c.Eps)
	case c.WeightDecay < 0 || c.MaxGradNorm < 0:
		return fmt.Errorf("training config: weight_decay and max_grad_norm must not be negative")
	case c.EMADecay < 0 || c.EMADecay >= 1:
		return fmt.Errorf("training config: ema_decay %g must lie in [0, 1)", c.EMADecay)
	case c.FaceDropProb < 0 || c.FaceDropProb > 1:
		return fmt.Errorf("training config: face_drop_prob %g must lie in [0, 1]", c.FaceDropProb)
	case !(c.TextDropProb >= 0 && c.TextDropProb <= 1):
		return fmt.Errorf("training config: text_drop_prob %g must lie in [0, 1]", c.TextDropProb)
	case c.LossWeight != "" && c.LossWeight != LossWeightEps && c.LossWeight != LossWeightV:
		return fmt.Errorf("training config: loss_weight %q, want %q or %q", c.LossWeight, LossWeightEps, LossWeightV)
	case c.LossWeight == LossWeightV && c.Model.OutputKind() != model.OutputVSkip:
		return fmt.Errorf("training config: loss_weight %q needs the model's %q output (with ε output the weight 1/ᾱ reaches 200 and swamps the loss)", LossWeightV, model.OutputVSkip)
	case c.CheckpointEvery < 0 || c.KeepCheckpoints < 0:
		return fmt.Errorf("training config: checkpoint_every and keep_checkpoints must not be negative")
	}
	if u := c.UNet; u != nil {
		if err := u.Validate(); err != nil {
			return fmt.Errorf("training config: unet: %w", err)
		}
		switch {
		case u.InChannels != c.Model.LatentChannels || u.OutChannels != c.Model.LatentChannels:
			return fmt.Errorf("training config: the UNet takes %d and gives %d channels, the latent has %d", u.InChannels, u.OutChannels, c.Model.LatentChannels)
		case u.CrossAttentionDim != c.Model.TextWidth:
			return fmt.Errorf("training config: the UNet's cross_attention_dim %d differs from the context width %d", u.CrossAttentionDim, c.Model.TextWidth)
		case c.Model.LatentSize%u.Downscale() != 0:
			return fmt.Errorf("training config: latent size %d is not a multiple of the UNet's downscale %d", c.Model.LatentSize, u.Downscale())
		case c.Model.OutputKind() != model.OutputEps || (c.LossWeight != "" && c.LossWeight != LossWeightEps):
			return fmt.Errorf("training config: the UNet predicts ε: model output must be %q and loss_weight %q", model.OutputEps, LossWeightEps)
		}
		if c.Conv != sd.ConvIm2col && c.Conv != sd.ConvNative {
			return fmt.Errorf("training config: conv %d, want im2col (%d) or native (%d)", c.Conv, sd.ConvIm2col, sd.ConvNative)
		}
	}
	if c.Model.OutputKind() == model.OutputVSkip && c.UNet == nil {
		sd := sched.SD15(sched.DDIM)
		if c.NumTrainTimesteps != sd.NumTrainTimesteps || c.BetaStart != sd.BetaStart || c.BetaEnd != sd.BetaEnd || c.BetaSchedule != sd.BetaSchedule {
			return fmt.Errorf("training config: the %q output builds SD's schedule (%d steps, %s %g..%g) into the model; the training schedule must be the same", model.OutputVSkip, sd.NumTrainTimesteps, sd.BetaSchedule, sd.BetaStart, sd.BetaEnd)
		}
	}
	_, err := c.schedule()
	return err
}

func (c Config) schedule() (*sched.Schedule, error) {
	return sched.NewSchedule(sched.Config{
		NumTrainTimesteps: c.NumTrainTimesteps,
		BetaStart:         c.BetaStart,
		BetaEnd:           c.BetaEnd,
		BetaSchedule:      c.BetaSchedule,
	})
}

// Specs are the trained network's weights: the projection MLP's and the
// denoiser's (Model's transformer, or the SD UNet under "unet.").
func (c Config) Specs() []model.ParamSpec {
	if c.UNet == nil {
		return c.Model.Specs()
	}
	specs := c.Model.ProjectionSpecs()
	for _, s := range sd.Specs(*c.UNet) {
		s.Name = model.DenoiserPrefix + s.Name
		specs = append(specs, s)
	}
	return specs
}

// denoise builds the denoiser's ε prediction.
func (c Config) denoise(w model.Lookup, sample, t, ctx *Node) *Node {
	if c.UNet == nil {
		return c.Model.Denoiser(w, sample, t, ctx)
	}
	unet := func(name string) *Node { return w(model.DenoiserPrefix + name) }
	return sd.Forward(*c.UNet, unet, sample, t, ctx, sd.Options{Conv: c.Conv})
}

// WriteONNX exports the trained networks into an SD-layout model folder:
// dir/unet/model.onnx (the transformer, or SD's UNet; a UNet over 2 GB
// keeps its weights in a side file) and dir/face0/projection.onnx.
//
// With a UNet, the UNet's weights are taken out of w (it keeps the
// projection's).
func (c Config) WriteONNX(dir string, w model.Weights) error {
	if c.UNet == nil {
		return c.Model.WriteONNX(dir, w)
	}
	// The UNet's weights move out of w into the export, which lets each
	// go once it is in the graph: a full-size UNet is not held twice.
	unet := model.Weights{}
	for name, x := range w {
		if rest, ok := strings.CutPrefix(name, model.DenoiserPrefix); ok {
			unet[rest] = x
			delete(w, name)
		}
	}
	if err := sd.WriteONNXWith(dir, *c.UNet, unet, sd.ExportOptions{Consume: true}); err != nil {
		return fmt.Errorf("training: export the UNet: %w", err)
	}
	g, err := c.Model.ExportProjection(w)
	if err != nil {
		return fmt.Errorf("training: export the projection: %w", err)
	}
	p := filepath.Join(dir, sdmodel.ProjectionFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return g.Save(p)
}
