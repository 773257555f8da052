package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/internal/config"
	"github.com/face0/face0/ml/sdmodel"
)

const modelsUsage = `usage:
  face0 models list [--models DIR]     model folders and whether each one checks out
  face0 models check DIR               check one model folder (files, ONNX inputs and sizes)
  face0 models make-tiny DIR [--seed N] write a tiny random-weight Face0 model (for tests and demos)

The models folder defaults to $FACE0_MODELS, else $FACE0_HOME/models.
`

// cmdModels manages model folders: the face0 pack's nodes list the folders
// of the models directory as their model choices.
func cmdModels(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, modelsUsage)
		return exitCode(2)
	}
	fs := flag.NewFlagSet("models "+args[0], flag.ContinueOnError)
	dir := fs.String("models", config.Models(), "models folder")
	seed := fs.Uint64("seed", 1, "make-tiny: weight seed")
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
			if _, err := sdmodel.Load(filepath.Join(*dir, n)); err != nil {
				fmt.Printf("%s\tBROKEN: %v\n", n, err)
			} else {
				fmt.Printf("%s\tok\n", n)
			}
		}
		return nil
	case args[0] == "check" && len(pos) == 1:
		m, err := sdmodel.Load(pos[0])
		if err != nil {
			return err
		}
		fmt.Printf("%s: ok (embedding space %s, %d-d; text width %d; %dpx)\n", m.Dir, m.Manifest.Embedding.Space, m.Manifest.Embedding.Dim, m.Manifest.TextWidth, m.Manifest.SampleSize)
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
	}
	fmt.Fprint(os.Stderr, modelsUsage)
	return exitCode(2)
}
