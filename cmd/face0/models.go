package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/face0/face0/internal/config"
	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
)

const modelsUsage = `usage:
  face0 models list [--models DIR]     model folders and whether each one checks out
  face0 models check DIR               check one model folder (files, ONNX inputs and sizes)
  face0 models make-tiny DIR [--seed N] write a tiny random-weight Face0 model (for tests and demos)
  face0 models import SRC [--name NAME] [--fp16] [--ema auto|on|off] [--models DIR]
                                       turn a Stable Diffusion 1.x checkpoint (the single .safetensors
                                       file ComfyUI keeps in models/checkpoints) or a diffusers folder
                                       into a model folder; it samples from text at once, and takes a
                                       face once a projection is trained for it and attached
  face0 models attach-projection MODEL TRAINED [--force] [--models DIR]
                                       give MODEL the face projection of TRAINED, a model trained with
                                       face0 train --base MODEL --adapter-only

The models folder defaults to $FACE0_MODELS, else $FACE0_HOME/models.
MODEL and TRAINED are folder names in it, or paths.
`

// cmdModels manages model folders: the face0 pack's nodes list the folders
// of the models directory as their model choices.
func cmdModels(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, modelsUsage)
		return exitCode(2)
	}
	if isHelpFlag(args[0]) || args[0] == "help" {
		fmt.Print(modelsUsage)
		return nil
	}
	fs := flag.NewFlagSet("models "+args[0], flag.ContinueOnError)
	dir := fs.String("models", config.Models(), "models folder")
	seed := fs.Uint64("seed", 1, "make-tiny: weight seed")
	name := fs.String("name", "", "import: the model folder's name [the checkpoint's file name]")
	fp16 := fs.Bool("fp16", false, "import: write the UNet in float16 (half the size; for GPUs)")
	ema := fs.String("ema", "auto", "import: a checkpoint's UNet copy: auto (the EMA weights when present), on, off")
	force := fs.Bool("force", false, "attach-projection: attach although nothing shows it was trained for this UNet")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case args[0] == "list" && len(pos) == 0:
		names, err := sdmodel.Discover(*dir)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Printf("no model folders in %s\n", *dir)
		}
		for _, n := range names {
			m, err := sdmodel.Load(filepath.Join(*dir, n))
			switch {
			case err != nil:
				fmt.Printf("%s\tBROKEN: %v\n", n, err)
			case !m.Manifest.HasFace():
				fmt.Printf("%s\tok, no face projection yet (text only)\n", n)
			default:
				fmt.Printf("%s\tok\n", n)
			}
		}
		return nil
	case args[0] == "check" && len(pos) == 1:
		m, err := sdmodel.Load(pos[0])
		if err != nil {
			return err
		}
		face := fmt.Sprintf("embedding space %s, %d-d", m.Manifest.Embedding.Space, m.Manifest.Embedding.Dim)
		if !m.Manifest.HasFace() {
			face = "no trained face projection: text only until one is attached"
		}
		fmt.Printf("%s: ok (%s; text width %d; %dpx)\n", m.Dir, face, m.Manifest.TextWidth, m.Manifest.SampleSize)
		return nil
	case args[0] == "make-tiny" && len(pos) == 1:
		cfg := sdmodel.TinyConfig()
		cfg.Name = filepath.Base(pos[0])
		cfg.Seed = *seed
		if err := sdmodel.Generate(pos[0], cfg); err != nil {
			return err
		}
		fmt.Printf("wrote tiny model %s\n", pos[0])
		return nil
	case args[0] == "import" && len(pos) == 1:
		return importModel(pos[0], *dir, *name, *fp16, *ema)
	case args[0] == "attach-projection" && len(pos) == 2:
		model, trained := modelPath(*dir, pos[0]), modelPath(*dir, pos[1])
		if err := base.AttachProjection(model, trained, *force); err != nil {
			return err
		}
		fmt.Printf("%s now has the face projection of %s\n", model, trained)
		return nil
	}
	fmt.Fprint(os.Stderr, modelsUsage)
	return exitCode(2)
}

// modelPath is a folder name in the models folder, or a path as given.
func modelPath(models, s string) string {
	if strings.ContainsRune(s, os.PathSeparator) || s == "." || s == ".." {
		return s
	}
	if _, err := os.Stat(filepath.Join(models, s)); err == nil {
		return filepath.Join(models, s)
	}
	return s
}

func importModel(src, models, name string, fp16 bool, emaFlag string) error {
	var ema ckpt.EMA
	switch emaFlag {
	case "auto":
		ema = ckpt.EMAAuto
	case "on":
		ema = ckpt.EMAOn
	case "off":
		ema = ckpt.EMAOff
	default:
		return fmt.Errorf("--ema %q: use auto, on or off", emaFlag)
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(filepath.Clean(src)), filepath.Ext(src))
	}
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("--name %q: give a plain folder name", name)
	}
	dst := filepath.Join(models, name)
	training.SoftMemoryLimit(0.9) // the UNet's float32 weights pass through the Go heap
	start := time.Now()
	info, err := base.Import(src, dst, base.ImportOptions{Name: name, FP16: fp16, EMA: ema, Logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	}})
	if err != nil {
		return err
	}
	what := info.Kind
	if info.UNetWeights != "" {
		what += ", " + info.UNetWeights + " UNet weights"
	}
	if info.SourceDTypes != "" {
		what += ", " + info.SourceDTypes
	}
	fmt.Printf("imported %s (%s) as %s in %s: UNet %s; no face projection yet, so it samples from text only.\n",
		src, what, dst, time.Since(start).Round(time.Second), info.UNetPrecision)
	fmt.Printf("For faces: face0 train DATASET --base %s --adapter-only --out %s, then face0 models attach-projection %s %s-face\n",
		dst, filepath.Join(models, name+"-face"), name, name)
	return nil
}
