package evaluate

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/plugins/host"
)

// shippedModels is a models folder of its own (fine-tuned models are
// written there) holding a link to the shipped tiny model; it skips
// without onnxruntime.
func shippedModels(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "models", "face0-synthfaces"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "face0.json")); err != nil {
		t.Fatalf("the shipped model is missing: %v", err)
	}
	if err := ort.Init(); err != nil {
		if errors.Is(err, ort.ErrNoLibrary) {
			t.Skipf("skipping: %v (make setup installs onnxruntime)", err)
		}
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(src, filepath.Join(dir, "face0-synthfaces")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shippedApp starts the image, face and face0 packs as real plugin
// processes on a models folder holding the shipped model.
func shippedApp(t *testing.T) *app.App {
	models := shippedModels(t)
	dir := t.TempDir()
	bin, err := testplugin.Face0(dir)
	if err != nil {
		t.Fatal(err)
	}
	var extra []host.Source
	for _, p := range []string{"image", "face", "face0"} {
		extra = append(extra, host.Source{Name: p, Path: bin, Args: []string{"plugin", p}})
	}
	a, err := app.Open(context.Background(), app.Options{Home: dir, ModelsDir: models, PluginsDir: filepath.Join(dir, "none"), Extra: extra, NoCache: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Problems) > 0 {
		t.Fatalf("plugin problems: %v", a.Problems)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestShippedModelFollowsFaceAndText runs a small evaluation of the
// shipped tiny model on held-out identities, with a briefly fine-tuned
// baseline: the generated images must follow the input face (the
// independent face score and the synthfaces-id one above the random
// embedding's, paired by identity) and the prompt (its background colour
// found far above the other prompts'). The full evaluation is make
// evaluate-tiny; see docs/tiny-model.
func TestShippedModelFollowsFaceAndText(t *testing.T) {
	a := shippedApp(t)
	st := PaperSetting
	st.Steps = 25
	rep, err := Run(context.Background(), Options{App: a, Model: "face0-synthfaces", Identities: 6, Prompts: []int{0, 5}, Seeds: 4,
		Settings: []Setting{st}, FineTune: FineTune{Steps: 3, Prior: 8, Batch: 4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Markdown())
	rows := rep.Results[0].Table1[2].Rows // all prompts
	face, ft, random := rows[0], rows[1], rows[2]
	if face.N != 6*2*4 || ft.N != face.N || random.N != face.N {
		t.Fatalf("samples: face %d, fine-tuned %d, random %d; want %d each", face.N, ft.N, random.N, 6*2*4)
	}
	var vsRandom Diff
	for _, d := range rep.Results[0].Diffs[2].Diffs {
		if d.Versus == CondRandom {
			vsRandom = d
		}
	}
	if vsRandom.Face.Lo <= 0 {
		t.Errorf("independent face score with the input face %s is not above the random embedding's %s (paired difference %s)", f3(face.Face), f3(random.Face), ci(vsRandom.Face))
	}
	if face.FaceID.Mean-random.FaceID.Mean < 0.05 {
		t.Errorf("synthfaces-id face score with the input face %s is not above the random embedding's %s", f3(face.FaceID), f3(random.FaceID))
	}
	if bg, chance := face.Attr[0], face.AttrChance[0]; bg < chance+0.4 {
		t.Errorf("the prompt's background colour is found in %.0f%% of samples, against %.0f%% for the other prompts': the model does not follow the text", 100*bg, 100*chance)
	}
	if len(rep.FineTuned) != 6 || rep.FineTuned[0].Seconds <= 0 {
		t.Errorf("fine-tuning runs: %+v", rep.FineTuned)
	}
	if rep.InputsWithoutFace != 0 {
		t.Errorf("the detector missed %d input faces", rep.InputsWithoutFace)
	}
}

// TestFreshHome: an evaluation without the fine-tuning baseline, and its
// strips, run in a home whose input folder was empty when the plugins
// started (LoadImage refuses images it did not list: the evaluation writes
// its input faces and must have the nodes described again).
func TestFreshHome(t *testing.T) {
	a := shippedApp(t)
	st := PaperSetting
	st.Steps = 4
	o := Options{App: a, Model: "face0-synthfaces", Identities: 2, Prompts: []int{0}, Seeds: 1, Settings: []Setting{st}, NoFineTune: true}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	rows := rep.Results[0].Table1[2].Rows
	if rows[0].N != 2 || rows[1].N != 0 || rep.FineTune != nil {
		t.Errorf("Face0 samples %d (want 2), fine-tuning baseline samples %d and settings %+v (want none: left out)", rows[0].N, rows[1].N, rep.FineTune)
	}
	interp, random, err := Strips(context.Background(), StripOptions{Options: o, Setting: st, N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(interp) != 2+2 || len(random) != 2 {
		t.Errorf("strips: %d images in the interpolation strip (want the 2 faces and 2 samples) and %d random ones (want 2)", len(interp), len(random))
	}
}

// TestDefaultWorkflow runs examples/workflows/face0-default.json, the
// workflow `make serve` opens, as saved, on the shipped model.
func TestDefaultWorkflow(t *testing.T) {
	a := shippedApp(t)
	data, err := os.ReadFile(filepath.Join("..", "examples", "inputs", "synthface.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Dirs.Input, "synthface.png"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	wf, _, err := workflow.ReadFile(filepath.Join("..", "examples", "workflows", "face0-default.json"))
	if err != nil {
		t.Fatal(err)
	}
	// LoadImage lists the input folder when the plugins describe their
	// nodes: ask again now that the face is there, as the server does.
	cat, errs := a.Refresh(context.Background())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	plan, err := cat.Compile(wf, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := a.Engine.Run(context.Background(), plan, engine.RunOptions{PromptID: "default", NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default workflow: %s for 4 images", time.Since(start).Round(time.Millisecond))
	files, _ := filepath.Glob(filepath.Join(a.Dirs.Output, "face0", "default_*.png"))
	if len(res.Executed) == 0 || len(files) != 4 {
		t.Fatalf("executed %v; saved %v, want 4 images", res.Executed, files)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
