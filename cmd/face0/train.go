package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/face0/face0/internal/config"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/pipeline"
	"github.com/face0/face0/training/textclip"
)

const trainUsage = `usage: face0 train DATASET [--out MODEL_DIR] [--steps N] [--batch B] [--lr X] [--resume] [flags]

Encodes DATASET (metadata.jsonl, or images with .txt captions; a synthfaces
folder's train/ split), trains a Face0 model on it and writes the model folder
MODEL_DIR (default: <models folder>/trained). From scratch it trains the tiny
latent transformer; --base DIR fine-tunes a Stable Diffusion 1.x diffusers
folder as the paper does (its VAE and text encoder frozen, its UNet and the
face projection trained). The run's state (encoded
dataset, checkpoints, losses.csv, loss.png) lives in --run (default:
.train/<name> beside MODEL_DIR). Ctrl-C writes a checkpoint; --resume
continues from it.

From scratch the defaults are the shipped tiny model's recipe (make
reproduce-tiny) at fewer steps: the text encoder pretrained on the captions
first (--text-pretrain 500), faces embedded in a space EmbedFace gives at
sampling time (--face auto: synthfaces-id-64 on a synthfaces dataset), CLIP's
tokenizer (shipped with face0), batch 16, lr 1e-3. The default workflow
(examples/workflows/face0-default.json) drives the result with a face and a
prompt once its three model inputs name it.
`

func cmdTrain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	out := fs.String("out", filepath.Join(config.Models(), "trained"), "model folder to write")
	run := fs.String("run", "", "run folder (default: .train/<name> beside --out)")
	steps := fs.Int("steps", 500, "total optimizer steps")
	batch := fs.Int("batch", 16, "examples per step")
	lr := fs.Float64("lr", 0, "AdamW learning rate (default 1e-3 from scratch, 2e-5 with --base as the paper)")
	baseDir := fs.String("base", "", "Stable Diffusion 1.x model to fine-tune: a single-file .safetensors checkpoint, a folder face0 models import wrote, or a diffusers folder (unet/, vae/, text_encoder/, tokenizer/ with .safetensors weights); default: the tiny transformer from scratch")
	adapterOnly := fs.Bool("adapter-only", false, "with --base, freeze the UNet and train the face projection alone (for small GPUs)")
	textDrop := fs.Float64("text-drop", -1, "probability that a caption is replaced by the empty prompt while training, so the unconditional and face-only guidance branches are trained (0: never, the paper's setting for fine-tuning SD; default 0.1 from scratch, never with --base); a run resumes only with the value it started with")
	lossWeight := fs.String("loss-weight", "", "per-timestep loss weight: v (ε-MSE over ᾱ_t, the v target's MSE; default for the presets' v-skip output) or eps (uniform, the paper's objective for fine-tuning)")
	resume := fs.Bool("resume", false, "continue from the run's latest checkpoint")
	emaDecay := fs.Float64("ema-decay", 0.9999, "EMA of the weights, exported instead of the last weights (0: no EMA, which saves one copy of the weights: 3.4 GB for SD 1.x)")
	every := fs.Int("checkpoint-every", 100, "steps between checkpoints")
	seed := fs.Uint64("seed", 0, "weights, data order and noise")
	preset := fs.String("preset", "tiny", "model size: tiny (width 64, 2 blocks) or small (width 128, 4 blocks)")
	face := fs.String("face", data.FaceAuto, "face embeddings: auto (synthfaces-id for a synthfaces dataset, precomputed for other metadata embeddings, else detect: always a space EmbedFace gives at sampling time), precomputed (metadata), detect (face-api's detector and 128-d descriptor) or synthfaces-id (the synthfaces identity embedder on the whole image)")
	noFace := fs.String("no-face", data.NoFaceZero, "images without a face: zero (keep, face tokens zeroed) or skip")
	size := fs.Int("size", 0, "image side the dataset is fitted to (default 32 from scratch, the base VAE's sample_size with --base)")
	factor := fs.Int("factor", 0, "space-to-depth factor of the latent from scratch (default 4: 32 px / 4 = 8x8 latents of 48 channels); ignored with --base")
	vocab := fs.String("vocab", data.VocabAuto, "tokenizer of the frozen text encoder: auto (CLIP's BPE vocabulary, shipped with face0), tiny (a small byte-level one), or a bpe_simple_vocab_16e6.txt.gz path")
	textPretrain := fs.Int("text-pretrain", -1, fmt.Sprintf("steps of contrastive (CLIP-style) pretraining of the text encoder on the dataset's caption-image pairs before it is frozen; a model trained from scratch needs it to follow captions (default %d from scratch, as make reproduce-tiny; 0 with --base, whose encoder is pretrained; 0: keep random weights)", pipeline.DefaultTextPretrain))
	plain := fs.Bool("plain", false, "plain log lines even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, trainUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitCode(2)
	}
	*textPretrain = pipeline.TextPretrainSteps(*textPretrain, *baseDir != "" && *baseDir != "none")
	ctx, caught, stop := signalContext()
	defer stop()

	p := newTrainProgress(os.Stderr, !*plain && isTerminal(os.Stderr))
	res, err := pipeline.Run(ctx, pipeline.Options{
		Dataset: pos[0], Out: *out, RunDir: *run, Base: *baseDir, AdapterOnly: *adapterOnly,
		EMADecay: cliEMA(*emaDecay),
		Steps:    *steps, Batch: *batch, LR: *lr, TextDrop: cliTextDrop(*textDrop), LossWeight: *lossWeight, Seed: *seed, CheckpointEvery: *every, Resume: *resume, Preset: *preset,
		Prep: data.Options{
			Latent: data.Latent{Size: *size, Factor: *factor},
			Face:   *face, NoFace: *noFace, Vocab: *vocab, Models: filepath.Dir(filepath.Clean(*out)),
			TextPretrain: textclip.Options{Steps: *textPretrain},
		},
		Logf:       p.logf,
		OnProgress: p.progress,
	})
	p.done()
	if errors.Is(err, pipeline.ErrCancelled) {
		msg := fmt.Sprintf("%v\nrun the same command with --resume to continue", err)
		if sig := caught(); sig != nil {
			return stoppedBy(sig, msg)
		}
		return errors.New(msg)
	}
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d steps, fixed-batch loss %.4f -> %.4f, %.3f s/step, %d examples (%d skipped); run folder %s\n",
		res.ModelDir, res.Steps, res.EvalStart, res.EvalEnd, res.StepSeconds, res.Prepared.Count, len(res.Prepared.Problems), res.RunDir)
	return nil
}

// trainProgress draws one bar line, redrawn in place on a terminal, or a
// line per 10% otherwise; log lines go above it.
type trainProgress struct {
	w     io.Writer
	tty   bool
	line  string
	drawn bool
	last  time.Time
	pct   map[string]int
}

func newTrainProgress(w io.Writer, tty bool) *trainProgress {
	return &trainProgress{w: w, tty: tty, pct: map[string]int{}}
}

func (t *trainProgress) clear() {
	if t.tty && t.drawn {
		fmt.Fprint(t.w, "\r\x1b[2K")
		t.drawn = false
	}
}

func (t *trainProgress) logf(format string, args ...any) {
	t.clear()
	fmt.Fprintf(t.w, format+"\n", args...)
	t.redraw()
}

func (t *trainProgress) redraw() {
	if t.tty && t.line != "" {
		fmt.Fprint(t.w, "\r\x1b[2K"+t.line)
		t.drawn = true
		t.last = time.Now()
	}
}

func (t *trainProgress) progress(p pipeline.Progress) {
	var line string
	switch p.Phase {
	case "prepare":
		line = fmt.Sprintf("prepare %s %d/%d images", bar(int64(p.Done), int64(p.Total), 30), p.Done, p.Total)
	case "train":
		line = fmt.Sprintf("train   %s %d/%d loss %.4f (%.4f)", bar(int64(p.Done), int64(p.Total), 30), p.Done, p.Total, p.Loss, p.Smoothed)
		if p.StepsPerSec > 0 {
			line += fmt.Sprintf(" %.2f steps/s ETA %s", p.StepsPerSec, p.ETA)
		}
	case "export":
		line = "exporting the model folder"
	}
	t.line = line
	if t.tty {
		if p.Done == p.Total || p.Checkpoint != "" || time.Since(t.last) > 100*time.Millisecond {
			t.redraw()
		}
		return
	}
	pct := 0
	if p.Total > 0 {
		pct = p.Done * 10 / p.Total
	}
	if old, ok := t.pct[p.Phase]; !ok || pct != old {
		t.pct[p.Phase] = pct
		fmt.Fprintln(t.w, line)
	}
}

func (t *trainProgress) done() {
	if t.tty && t.drawn {
		fmt.Fprintln(t.w)
		t.drawn = false
	}
}

// cliEMA maps --ema-decay (0: no EMA) to pipeline.Options.EMADecay
// (negative: no EMA).
func cliEMA(d float64) float64 {
	if d == 0 {
		return -1
	}
	return d
}

// cliTextDrop maps --text-drop (negative: the default, 0: never) to
// pipeline.Options.TextDrop (0: the default, negative: never).
func cliTextDrop(p float64) float64 {
	switch {
	case p < 0:
		return 0
	case p == 0:
		return -1
	}
	return p
}
