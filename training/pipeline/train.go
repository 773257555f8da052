package pipeline

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
)

// Folders and files of a run directory.
const (
	PreparedDir    = "prepared"    // data.Prepare's cache
	CheckpointsDir = "checkpoints" // training checkpoints
	LossFile       = "losses.csv"  // step,loss per optimizer step
	LossPlotFile   = "loss.png"
)

// Presets are the model sizes Run knows. The latent, text width and
// embedding dimension come from the prepared dataset.
var Presets = map[string]func(model.Config) model.Config{
	"tiny": func(c model.Config) model.Config { return c },
	"small": func(c model.Config) model.Config {
		c.Width, c.Blocks, c.Heads, c.TimeDim, c.TimeFreqDim, c.ProjHidden = 128, 4, 4, 128, 128, 128
		return c
	},
}

// DefaultTextDrop is Options.TextDrop's default: 10% of captions replaced by
// the empty prompt, as the face is zeroed in 10% (classifier-free guidance's
// usual rate).
const DefaultTextDrop = 0.1

// Options configure Run. Zero fields take the defaults in brackets.
// DefaultTextPretrain is make reproduce-tiny's text pretraining, the default
// of face0 train and the Train node from scratch: with it a model trained
// from scratch follows its captions (without, it ignores them); 500 steps
// take about 5 minutes on two cores. A base's text encoder is pretrained.
const DefaultTextPretrain = 500

// TextPretrainSteps resolves a requested step count: negative means the
// default, DefaultTextPretrain from scratch and none with a base.
func TextPretrainSteps(requested int, withBase bool) int {
	switch {
	case requested >= 0:
		return requested
	case withBase:
		return 0
	}
	return DefaultTextPretrain
}

type Options struct {
	Dataset string // dataset folder (data.Scan's layouts)
	Out     string // model folder to write (replaced when the run completes)
	// RunDir holds the prepared dataset, checkpoints and loss history
	// [DefaultRunDir(Out)]; reusing it reuses the encoding and allows resume.
	RunDir string
	Name   string // the model's name in face0.json [base name of Out]
	// Base is the Stable Diffusion 1.x model to fine-tune, a diffusers
	// folder (training/base): its UNet is trained with the projection, its
	// VAE and text encoder stay frozen and prepare the dataset. "" or
	// "none" trains the tiny transformer from scratch.
	Base string
	// AdapterOnly freezes the denoiser (the base UNet; from scratch, the
	// transformer at its initial weights, which is only useful for tests)
	// and trains the projection alone (for small GPUs).
	AdapterOnly bool

	Steps int     // total optimizer steps of the run [500]
	Batch int     // examples per step [8]
	LR    float64 // AdamW learning rate [1e-3 from scratch; 2e-5 from a base, the paper's]
	Seed  uint64  // weights, data order and noise [0]
	// TextDrop is the probability that a caption is replaced by the empty
	// prompt during training [0.1 from scratch, never from a base;
	// negative: never]. A model trained from
	// scratch needs it: the paper fine-tunes SD, whose unconditional branch
	// already exists, and never drops the text (training.Config's default
	// 0); without it the empty prompt is never seen, so the unconditional
	// and face-only branches of the three-way guidance are untrained.
	TextDrop float64
	// LossWeight is training.Config.LossWeight ["v" when the model has the
	// "v-skip" output, as every preset has; "eps" the paper's uniform
	// ε-MSE]. Uniform ε-MSE leaves a model trained from scratch without a
	// global layout (see training.Config.LossWeight).
	LossWeight      string
	CheckpointEvery int // steps [100]; a checkpoint is also written at the end and on cancellation
	// Resume continues from the run directory's latest checkpoint (a fresh
	// run when there is none); false starts over, deleting old checkpoints.
	Resume bool
	Preset string // "tiny" (width 64, 2 blocks) or "small" (width 128, 4 blocks) [tiny]
	// Model, when its Width is set, replaces the preset (its latent, text
	// and embedding fields are still taken from the dataset).
	Model model.Config
	// Current exports the current weights instead of the EMA.
	Current bool
	// EMADecay is the weights' EMA decay [0: training.Config's 0.9999;
	// negative: no EMA, the current weights are exported]. Without it a
	// full-size SD 1.x run holds one 3.4 GB copy less (weights, moments
	// and gradients remain: about 14 GB on a CPU).
	EMADecay float64

	Prep data.Options

	// OnProgress is called during preparation and after every step;
	// OnPlot with the loss curve every PlotEvery steps [10] and at the end.
	OnProgress func(Progress)
	OnPlot     func(image.Image)
	PlotEvery  int
	Logf       func(format string, args ...any)
}

// Progress is one report of a run.
type Progress struct {
	Phase       string // "prepare", "train", "export"
	Done, Total int    // images (prepare) or steps (train)
	Loss        float64
	Smoothed    float64 // exponential moving average (0.9) of the loss
	StepsPerSec float64
	ETA         time.Duration
	Checkpoint  string // written after this step, if any
}

// Result is what a completed run did.
type Result struct {
	ModelDir string
	RunDir   string
	Prepared data.Info
	Steps    int       // steps done in all (a resumed run counts the earlier ones)
	Losses   []float64 // per step, from step 1
	// EvalStart and EvalEnd are the objective on a fixed batch (up to 16
	// examples, fixed noise and timesteps) with the current weights at the
	// start of this session and at the end: a noise-free "does it learn".
	EvalStart, EvalEnd float64
	PrepSeconds        float64
	StepSeconds        float64 // median wall time per step of this session (after the first, which compiles)
	Checkpoint         string
}

// DefaultRunDir is where a run for the model folder out keeps its state:
// .train/<name> beside it (hidden, and without a face0.json, so a models
// folder does not list it as a model).
func DefaultRunDir(out string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(out)), ".train", filepath.Base(filepath.Clean(out)))
}

// ErrCancelled wraps a cancelled run's error; the checkpoint it left is
// named in the message.
var ErrCancelled = errors.New("training cancelled")

// Run prepares the dataset (or reuses the run directory's encoding),
// trains, and exports the model folder. On cancellation it writes a
// checkpoint first and returns an error wrapping ErrCancelled and ctx's
// error; Options.Resume continues from there.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Dataset == "" || o.Out == "" {
		return nil, errors.New("train: need a dataset folder and an output model folder")
	}
	// The backend first: a GPU set-up that lacks a piece says so now, not
	// after the dataset has been prepared.
	if _, err := training.Backend(); err != nil {
		return nil, err
	}
	training.SoftMemoryLimit(0.9)
	var bm *base.Model
	if o.Base != "" && o.Base != "none" {
		var err error
		if bm, err = base.Open(o.Base); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	if bm != nil {
		if _, set := os.LookupEnv("GOGC"); !set {
			// SD's state is gigabytes of Go heap on the pure-Go backend:
			// collect when the heap grows by 5%, not when it doubles.
			// Marking pointer-free tensors costs little; measured on SD
			// 1.5 at 64 px, the peak went 21.9 → 17.4 GB with GOGC 20
			// and streamed checkpoints (see the README's full-size run).
			defer debug.SetGCPercent(debug.SetGCPercent(5))
		}
	}
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir(o.Out)
	}
	if o.Name == "" {
		o.Name = filepath.Base(filepath.Clean(o.Out))
	}
	if o.Steps <= 0 {
		o.Steps = 500
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.LR <= 0 {
		o.LR = 1e-3
		if bm != nil {
			o.LR = training.DefaultConfig().LR
		}
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 100
	}
	switch {
	case o.TextDrop == 0 && bm == nil:
		o.TextDrop = DefaultTextDrop
	case o.TextDrop < 0:
		o.TextDrop = 0
	}
	if o.Preset == "" {
		o.Preset = "tiny"
	}
	if o.PlotEvery <= 0 {
		o.PlotEvery = 10
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	report := o.OnProgress
	if report == nil {
		report = func(Progress) {}
	}
	preset, ok := Presets[o.Preset]
	if !ok {
		return nil, fmt.Errorf("train: preset %q: use tiny or small", o.Preset)
	}
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	res := &Result{ModelDir: o.Out, RunDir: o.RunDir}

	// 1. Prepare.
	prepOpts := o.Prep
	if bm != nil {
		size := prepOpts.Latent.Size
		if size == 0 {
			size = bm.VAE.SampleSize
		}
		prepOpts.Latent, prepOpts.Base = data.BaseLatent(size), bm
	} else if prepOpts.Latent.Size == 0 || prepOpts.Latent.Factor == 0 {
		d := data.DefaultLatent()
		prepOpts.Latent.Size = cmp.Or(prepOpts.Latent.Size, d.Size)
		prepOpts.Latent.Factor = cmp.Or(prepOpts.Latent.Factor, d.Factor)
	}
	prepOpts.Progress = func(done, total int) { report(Progress{Phase: "prepare", Done: done, Total: total}) }
	if prepOpts.Logf == nil {
		prepOpts.Logf = logf
	}
	t0 := time.Now()
	prep, err := data.Prepare(ctx, o.Dataset, filepath.Join(o.RunDir, PreparedDir), prepOpts)
	if err != nil {
		return nil, err
	}
	res.Prepared, res.PrepSeconds = prep.Info, time.Since(t0).Seconds()
	logf("dataset: %d examples (%d skipped, %d without a face), embeddings %s %d-d, latent %dx%dx%d (scale %g), text %dx%d (%s vocabulary)",
		prep.Info.Count, len(prep.Info.Problems), prep.Info.NoFace, prep.Info.Space, prep.Info.Dim,
		prep.Info.LatentChannels, prep.Info.LatentSize, prep.Info.LatentSize, prep.Info.LatentScale,
		prep.Info.ContextLength, prep.Info.TextWidth, prep.Info.Vocab)

	// 2. Train.
	cfg := training.DefaultConfig()
	mc := model.Tiny()
	if o.Model.Width > 0 {
		mc = o.Model
	} else {
		mc = preset(mc)
		mc.PatchSize = 0
	}
	mc.LatentChannels, mc.LatentSize = prep.Info.LatentChannels, prep.Info.LatentSize
	if mc.PatchSize <= 0 || mc.LatentSize%mc.PatchSize != 0 {
		// The largest patch whose values fit the token width: a patch
		// wider than the model is a bottleneck the denoiser cannot
		// pass x_t through (measured: width 64 with 192-value patches
		// learns 3x slower than with 48-value ones).
		mc.PatchSize = 1
		for _, p := range []int{4, 2} {
			if mc.LatentSize%p == 0 && p*p*mc.LatentChannels <= mc.Width {
				mc.PatchSize = p
				break
			}
		}
	}
	mc.ContextLength, mc.TextWidth, mc.EmbeddingDim = prep.Info.ContextLength, prep.Info.TextWidth, prep.Info.Dim
	if mc.FaceTokens == 0 {
		mc.FaceTokens = 3
	}
	if bm != nil {
		// The paper's setting: SD's UNet predicting ε with the uniform
		// objective, the 4-layer 768-wide projection.
		mc = model.Tiny().PaperProjection()
		mc.LatentChannels, mc.LatentSize, mc.PatchSize = prep.Info.LatentChannels, prep.Info.LatentSize, 1
		mc.ContextLength, mc.TextWidth, mc.EmbeddingDim, mc.FaceTokens = prep.Info.ContextLength, prep.Info.TextWidth, prep.Info.Dim, 3
		mc.Output, mc.PatchSkip = model.OutputEps, false
		u := bm.UNet
		cfg.UNet, cfg.Conv = &u, training.BackendConv()
		if o.LossWeight == "" {
			o.LossWeight = training.LossWeightEps
		}
	}
	cfg.AdapterOnly = o.AdapterOnly
	switch {
	case o.EMADecay < 0:
		cfg.EMADecay = 0
	case o.EMADecay > 0:
		cfg.EMADecay = o.EMADecay
	}
	cfg.Model = mc
	cfg.Seed, cfg.BatchSize, cfg.LR = o.Seed, o.Batch, o.LR
	cfg.TextDropProb = o.TextDrop
	cfg.LossWeight = o.LossWeight
	if cfg.LossWeight == "" && mc.OutputKind() == model.OutputVSkip {
		cfg.LossWeight = training.LossWeightV
	}
	cfg.CheckpointDir = filepath.Join(o.RunDir, CheckpointsDir)
	cfg.CheckpointEvery = o.CheckpointEvery
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var tr *training.Trainer
	if o.Resume {
		last, err := training.LatestCheckpoint(cfg.CheckpointDir)
		if err != nil {
			return nil, err
		}
		if last != "" {
			if ck, err := training.CheckpointConfig(last); err == nil && o.Model.Width == 0 && bm == nil {
				// A preset run from before the output option was ε
				// ("eps"); it resumes as it was trained.
				cfg.Model.Output = ck.Model.OutputKind()
				mc.Output = cfg.Model.Output
				cfg.Model.PatchSkip, mc.PatchSkip = ck.Model.PatchSkip, ck.Model.PatchSkip
				if o.LossWeight == "" {
					// and a run from before the loss weight, unweighted.
					cfg.LossWeight = ck.LossWeight
				}
			}
			if tr, err = training.ResumeFrom(cfg, prep, last); err != nil {
				return nil, fmt.Errorf("train: %w (start over with resume off; a run from before text drop resumes with text drop off)", err)
			}
			logf("resumed from %s at step %d", last, tr.State().Step)
		} else {
			logf("no checkpoint in %s: starting a new run", cfg.CheckpointDir)
		}
	} else if cks, _ := training.Checkpoints(cfg.CheckpointDir); len(cks) > 0 {
		logf("starting over: removing %d old checkpoints in %s", len(cks), cfg.CheckpointDir)
		if err := os.RemoveAll(cfg.CheckpointDir); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	if tr == nil {
		var init model.Weights
		if bm != nil {
			if init, err = bm.UNetWeights(); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
			maps.Copy(init, model.NewWeights(mc.ProjectionSpecs(), cfg.Seed))
		}
		if tr, err = training.New(cfg, prep, init); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	start := tr.State().Step
	losses, err := readLosses(filepath.Join(o.RunDir, LossFile), start)
	if err != nil {
		return nil, err
	}
	lossLog, err := openLosses(filepath.Join(o.RunDir, LossFile), losses)
	if err != nil {
		return nil, err
	}
	defer lossLog.Close()

	evalIdx := make([]int, min(16, prep.Len()))
	for i := range evalIdx {
		evalIdx[i] = i * prep.Len() / len(evalIdx)
	}
	evalBatch, err := tr.Batch(evalIdx, 12345)
	if err != nil {
		return nil, err
	}
	if res.EvalStart, err = tr.EvalLoss(evalBatch, false); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	plot := func() {
		img := LossPlot(losses, 480, 200)
		if o.OnPlot != nil {
			o.OnPlot(img)
		}
		if f, err := os.Create(filepath.Join(o.RunDir, LossPlotFile)); err == nil {
			_ = png.Encode(f, img)
			f.Close()
		}
	}
	smoothed := math.NaN()
	for _, l := range losses {
		smoothed = ema(smoothed, l)
	}
	var stepTimes []float64
	var firstDone time.Time
	lastCkpt := -1
	if bm != nil {
		frozen := ""
		if cfg.AdapterOnly {
			frozen = ", frozen"
		}
		logf("training %d steps (from step %d): %s's UNet (%d weights%s) and the projection; batch %d, lr %g, face drop %g, text drop %g, loss weight %s",
			o.Steps, start, bm.Dir, model.ParamCount(sd.Specs(*cfg.UNet)), frozen, o.Batch, o.LR, cfg.FaceDropProb, cfg.TextDropProb, lossWeightKind(cfg.LossWeight))
	} else {
		logf("training %d steps (from step %d): model width %d, %d blocks, patch %d (%d tokens), %d weights; batch %d, lr %g, face drop %g, text drop %g, loss weight %s",
			o.Steps, start, mc.Width, mc.Blocks, mc.PatchSize, mc.Tokens(), model.ParamCount(mc.Specs()), o.Batch, o.LR, cfg.FaceDropProb, cfg.TextDropProb, lossWeightKind(cfg.LossWeight))
	}
	for tr.State().Step < o.Steps {
		if err := ctx.Err(); err != nil {
			dir := ""
			if tr.State().Step != lastCkpt {
				if dir, err = tr.SaveCheckpoint(); err != nil {
					return nil, fmt.Errorf("train: cancelled, and the checkpoint failed: %w", err)
				}
			}
			plot()
			logf("cancelled at step %d; checkpoint %s", tr.State().Step, dir)
			return nil, fmt.Errorf("%w at step %d (checkpoint in %s; resume to continue): %w", ErrCancelled, tr.State().Step, cfg.CheckpointDir, ctx.Err())
		}
		t := time.Now()
		r, err := tr.Step()
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		dt := time.Since(t).Seconds()
		if firstDone.IsZero() {
			firstDone = time.Now()
		} else {
			stepTimes = append(stepTimes, dt)
		}
		if r.Checkpoint != "" {
			lastCkpt = r.Step
		}
		losses = append(losses, r.Loss)
		fmt.Fprintf(lossLog, "%d,%s\n", r.Step, strconv.FormatFloat(r.Loss, 'g', -1, 64))
		smoothed = ema(smoothed, r.Loss)
		p := Progress{Phase: "train", Done: r.Step, Total: o.Steps, Loss: r.Loss, Smoothed: smoothed, Checkpoint: r.Checkpoint}
		if n := len(stepTimes); n > 0 {
			p.StepsPerSec = float64(n) / time.Since(firstDone).Seconds()
			p.ETA = time.Duration(float64(o.Steps-r.Step) / p.StepsPerSec * float64(time.Second)).Round(time.Second)
		}
		report(p)
		if r.Step%o.PlotEvery == 0 {
			plot()
		}
	}
	if tr.State().Step != lastCkpt && tr.State().Step > start {
		if res.Checkpoint, err = tr.SaveCheckpoint(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	} else {
		res.Checkpoint, _ = training.LatestCheckpoint(cfg.CheckpointDir)
	}
	plot()
	if res.EvalEnd, err = tr.EvalLoss(evalBatch, false); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	res.Steps, res.Losses = tr.State().Step, losses
	res.StepSeconds = median(stepTimes)
	logf("fixed-batch loss %.4f -> %.4f; median %.3f s/step", res.EvalStart, res.EvalEnd, res.StepSeconds)

	// 3. Export.
	report(Progress{Phase: "export", Done: res.Steps, Total: o.Steps})
	w, which := tr.EMAWeights(), "ema"
	if o.Current {
		w, which = tr.Weights(), "current"
	}
	// The weights are out: the trainer's state (weights, moments, EMA;
	// 14 GB for SD 1.x) goes before the export needs room.
	tr.Close()
	runtime.GC()
	debug.FreeOSMemory()
	final := math.NaN()
	if len(losses) > 0 {
		final = smoothed
	}
	if err := Export(o.Out, o.Name, prep, cfg, w, Provenance{Dataset: prep.Info.Dataset, Steps: res.Steps, Weights: which, FinalLoss: final}); err != nil {
		return nil, err
	}
	logf("wrote model %s", o.Out)
	return res, nil
}

func ema(prev, x float64) float64 {
	if math.IsNaN(prev) {
		return x
	}
	return 0.9*prev + 0.1*x
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	for i := range s { // insertion sort: a few thousand values at most
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// readLosses reads the loss history up to step upTo (later lines belong to
// steps a resumed run will redo).
func readLosses(path string, upTo int) ([]float64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) || upTo == 0 {
		if f != nil {
			f.Close()
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	losses := make([]float64, 0, upTo)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		step, loss, ok := strings.Cut(sc.Text(), ",")
		if !ok {
			continue
		}
		s, err1 := strconv.Atoi(step)
		l, err2 := strconv.ParseFloat(loss, 64)
		if err1 != nil || err2 != nil || s != len(losses)+1 || s > upTo {
			continue
		}
		losses = append(losses, l)
	}
	return losses, nil
}

// openLosses rewrites the history file with losses and keeps it open for appending.
func openLosses(path string, losses []float64) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	for i, l := range losses {
		fmt.Fprintf(f, "%d,%s\n", i+1, strconv.FormatFloat(l, 'g', -1, 64))
	}
	return f, nil
}

func lossWeightKind(w string) string {
	if w == "" {
		return training.LossWeightEps
	}
	return w
}
