package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/face0/face0/evaluate"
	"github.com/face0/face0/internal/app"
)

const evaluateUsage = `usage: face0 evaluate --model NAME [--out DIR] [flags]

Tables 1 and 2 of the Face0 paper at toy scale, for a model trained on
synthfaces: held-out identities' faces and captions, generated through the
real nodes with the input face, a random embedding and no face, scored for
face alignment (synthfaces identity embedding cosine) and text alignment
(the caption's background, hat and glasses read back by synthfaces' probes).
Writes DIR/table.md, DIR/report.json, DIR/grid.png, DIR/interpolate.png and
DIR/random.png.

`

func cmdEvaluate(args []string) error {
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	models := fs.String("models", "", "models folder (default $FACE0_MODELS, else HOME/models)")
	modelName := fs.String("model", "", "the model to evaluate (a folder name in the models folder)")
	dir := fs.String("report", "evaluation", "folder the table, report and images are written to")
	seed := fs.Uint64("dataset-seed", 1, "synthfaces seed of the held-out identities (the one the training dataset used)")
	ids := fs.Int("identities", 20, "held-out identities")
	prompts := fs.Int("prompts", 3, "prompts (captions of the identity's other images) per identity")
	seeds := fs.Int("seeds", 4, "noise seeds per prompt and condition (Table 1)")
	bestOf := fs.Int("best-of", 8, "seeds per prompt and condition Table 2 picks the best of")
	steps := fs.Int("steps", 100, "sampler steps (a small model gains from many steps with eta 1)")
	sch := fs.String("scheduler", "ddim", "ddim, euler or dpm++2m")
	eta := fs.Float64("eta", 1, "DDIM's η: 1 draws fresh noise each step (DDPM-like; cleaner samples from a small model), 0 is deterministic DDIM")
	w := fs.Float64("w", 3, "guidance weight w (0: the model's default)")
	cw := fs.Float64("c", 1, "guidance c")
	aw := fs.Float64("a", 0, "guidance a")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, evaluateUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *modelName == "" {
		fs.Usage()
		return exitCode(2)
	}
	ctx, caught, stop := signalContext()
	defer stop()
	a, err := app.Open(ctx, app.Options{
		Home: c.home, InputDir: c.input, OutputDir: c.out, PluginsDir: c.plugins, CacheDir: c.cacheDir, ModelsDir: *models,
		Builtins: builtinNames(), NoCache: true,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	for _, p := range a.Problems {
		fmt.Fprintln(os.Stderr, "face0: warning:", p)
	}
	o := evaluate.Options{
		App: a, Model: *modelName, DatasetSeed: *seed, Identities: *ids, Prompts: *prompts,
		Seeds: *seeds, BestOf: *bestOf, Steps: *steps, Scheduler: *sch, Eta: *eta, W: *w, C: *cw, A: *aw,
		Progress: func(done, total int) { fmt.Fprintf(os.Stderr, "evaluate: %d/%d identities\n", done, total) },
	}
	rep, err := evaluate.Run(ctx, o)
	if err == nil {
		var interp, random []image.Image
		if interp, random, err = evaluate.Strips(ctx, evaluate.StripOptions{Options: o}); err == nil {
			return writeReport(*dir, rep, interp, random, max(*seeds, *bestOf))
		}
	}
	if sig := caught(); sig != nil {
		return stoppedBy(sig, "evaluation interrupted; nothing was written")
	}
	return err
}

// writeReport writes the evaluation's table, report and images into dir.
func writeReport(dir string, rep *evaluate.Report, interp, random []image.Image, batch int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	md := rep.Markdown() + fmt.Sprintf("\nMedian time per generated image: %.3f s (whole workflow runs, %d-image batches, this machine).\n", rep.SecondsPerImage, batch)
	if err := os.WriteFile(filepath.Join(dir, "table.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		return err
	}
	for name, img := range map[string]image.Image{
		"grid.png":        rep.Grid(6, 64),
		"interpolate.png": evaluate.Strip(interp, 64),
		"random.png":      evaluate.Strip(random, 64),
	} {
		if err := writeImage(filepath.Join(dir, name), img); err != nil {
			return err
		}
	}
	fmt.Print(md)
	fmt.Fprintf(os.Stderr, "evaluate: wrote %s (%.0f s)\n", dir, rep.Seconds)
	return nil
}

func writeImage(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
