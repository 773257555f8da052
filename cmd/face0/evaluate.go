package main

import (
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/face0/face0/evaluate"
	"github.com/face0/face0/internal/app"
)

const evaluateUsage = `usage: face0 evaluate --model NAME [--report DIR] [flags]

Tables 1 and 2 of the Face0 paper (section 4) at toy scale, for a model
trained on synthfaces: held-out identities' faces, 10 fixed prompts (5
photo-like, 5 artistic), 8 seeds, sampled through the real nodes with the
input face, a per-identity fine-tuned copy of the model (the DreamBooth-style
baseline), a random embedding and no face, in the paper's sampling setting
and the shipped defaults. Scored as the paper scores, with networks that did
not condition the model (synthfaces/evalnet): text = image-text cosine, face
= cosine of the detected face crops (0 when no face is found), overall =
face + text; beside them the synthfaces-id-64 face cosine and the attribute
probes. Writes DIR/table.md, DIR/report.json, DIR/samples.csv.gz,
DIR/grid.png, DIR/interpolate.png and DIR/random.png.

The fine-tuned models go into WORK/models beside a link to the evaluated
model, and are reused by later runs with the same settings. The whole
protocol took 37 minutes on two shared cores; --identities, --seeds, --settings
and --no-finetune make it smaller.

`

func cmdEvaluate(args []string) error {
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	models := fs.String("models", "", "models folder holding the model (default $FACE0_MODELS, else HOME/models)")
	modelName := fs.String("model", "", "the model to evaluate (a folder name in the models folder)")
	work := fs.String("work", "", "folder for the fine-tuned models (default HOME/evaluate)")
	dir := fs.String("report", "evaluation", "folder the tables, report and images are written to")
	seed := fs.Uint64("dataset-seed", 1, "synthfaces seed of the held-out identities (the one the training dataset used)")
	ids := fs.Int("identities", 20, "held-out identities")
	first := fs.Int("first-identity", 0, "skip this many held-out identities")
	seeds := fs.Int("seeds", 8, "noise seeds per prompt and conditioning (Table 1 averages them, Table 2 takes the best)")
	prompts := fs.String("prompts", "", "prompt numbers to use, e.g. 1,6 (default all 10)")
	settings := fs.String("settings", "paper,shipped", "sampler settings, the first being the main one: paper (DDIM η 0, 50 steps, w 7.5, c 1) and shipped (DDIM η 1, 100 steps, w 3, c 1)")
	noFT := fs.Bool("no-finetune", false, "leave out the fine-tuning baseline")
	var ft evaluate.FineTune
	fs.IntVar(&ft.Steps, "ft-steps", 0, "fine-tuning baseline: steps per identity (default 200)")
	fs.IntVar(&ft.Batch, "ft-batch", 0, "fine-tuning baseline: batch (default 8)")
	fs.Float64Var(&ft.LR, "ft-lr", 0, "fine-tuning baseline: learning rate (default 5e-4)")
	fs.IntVar(&ft.Images, "ft-images", 0, "fine-tuning baseline: renders of the identity (default 5)")
	fs.IntVar(&ft.Prior, "ft-prior", 0, "fine-tuning baseline: prior-preservation renders (default 200)")
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
	o := evaluate.Options{Model: *modelName, DatasetSeed: *seed, Identities: *ids, FirstIdentity: *first, Seeds: *seeds, FineTune: ft, NoFineTune: *noFT}
	for _, s := range strings.Split(*settings, ",") {
		switch strings.TrimSpace(s) {
		case "paper":
			o.Settings = append(o.Settings, evaluate.PaperSetting)
		case "shipped":
			o.Settings = append(o.Settings, evaluate.ShippedSetting)
		default:
			return fmt.Errorf("evaluate: --settings %q: use paper, shipped or both (paper,shipped)", *settings)
		}
	}
	if *prompts != "" {
		for _, s := range strings.Split(*prompts, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > len(evaluate.Prompts) {
				return fmt.Errorf("evaluate: --prompts %q: give prompt numbers from 1 to %d, separated by commas", *prompts, len(evaluate.Prompts))
			}
			o.Prompts = append(o.Prompts, n-1)
		}
	}
	modelsDir, err := evaluationModels(c.home, *models, *work, *modelName)
	if err != nil {
		return err
	}
	ctx, caught, stop := signalContext()
	defer stop()
	a, err := app.Open(ctx, app.Options{
		Home: c.home, InputDir: c.input, OutputDir: c.out, PluginsDir: c.plugins, CacheDir: c.cacheDir, ModelsDir: modelsDir,
		Builtins: builtinNames(), NoCache: true,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	for _, p := range a.Problems {
		fmt.Fprintln(os.Stderr, "face0: warning:", p)
	}
	o.App = a
	o.Progress = func(msg string) { fmt.Fprintln(os.Stderr, "evaluate:", msg) }
	rep, err := evaluate.Run(ctx, o)
	if err == nil {
		var interp, random []image.Image
		if interp, random, err = evaluate.Strips(ctx, evaluate.StripOptions{Options: o}); err == nil {
			return writeReport(*dir, rep, interp, random)
		}
	}
	if sig := caught(); sig != nil {
		return stoppedBy(sig, "evaluation interrupted; nothing was written (fine-tuned models already made are kept and reused)")
	}
	return err
}

// evaluationModels prepares the models folder the evaluation runs on:
// WORK/models with a link to the evaluated model (fine-tuned copies are
// written beside it, never into the user's models folder).
func evaluationModels(home, models, work, name string) (string, error) {
	if models == "" {
		models = os.Getenv("FACE0_MODELS")
	}
	if models == "" {
		models = filepath.Join(home, "models")
	}
	if work == "" {
		work = filepath.Join(home, "evaluate")
	}
	src, err := filepath.Abs(filepath.Join(models, name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(src, "face0.json")); err != nil {
		return "", fmt.Errorf("evaluate: no model %q in %s (a folder with a face0.json); --models names the models folder", name, models)
	}
	dir := filepath.Join(work, "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("evaluate: %w", err)
	}
	link := filepath.Join(dir, name)
	if st, err := os.Lstat(link); err == nil {
		if st.Mode()&os.ModeSymlink == 0 {
			return "", fmt.Errorf("evaluate: %s is a folder, not the link the evaluation makes; move it away or choose another --work", link)
		}
		if err := os.Remove(link); err != nil {
			return "", fmt.Errorf("evaluate: %w", err)
		}
	}
	if err := os.Symlink(src, link); err != nil {
		return "", fmt.Errorf("evaluate: %w", err)
	}
	return dir, nil
}

// writeReport writes the evaluation's tables, report, samples and images
// into dir.
func writeReport(dir string, rep *evaluate.Report, interp, random []image.Image) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	md := rep.Markdown()
	if err := os.WriteFile(filepath.Join(dir, "table.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeSamples(filepath.Join(dir, "samples.csv.gz"), rep.AllSamples()); err != nil {
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

// writeSamples writes every sample's scores, one CSV line each, gzipped
// (the committed report's samples are about 14,000 lines).
func writeSamples(path string, samples []evaluate.Sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	w := csv.NewWriter(zw)
	w.Write([]string{"setting", "identity", "prompt", "condition", "seed", "text", "face", "found", "face_id", "probe", "background", "hat", "glasses", "text_chance", "face_chance", "face_id_chance", "probe_chance"})
	g := func(v float64) string { return strconv.FormatFloat(v, 'f', 5, 64) }
	for _, s := range samples {
		w.Write([]string{s.Setting, strconv.Itoa(s.Identity), strconv.Itoa(s.Prompt + 1), s.Condition, strconv.FormatInt(s.Seed, 10),
			g(s.Text), g(s.Face), strconv.FormatBool(s.Found), g(s.FaceID), g(s.Probe), g(s.Attr[0]), g(s.Attr[1]), g(s.Attr[2]),
			g(s.TextChance), g(s.FaceChance), g(s.FaceIDChance), g(s.ProbeChance)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
