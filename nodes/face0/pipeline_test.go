package face0

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
)

func TestPipelineSavesImage(t *testing.T) {
	r := newRig(t, modelsDir)
	for _, tc := range []struct {
		name      string
		scheduler string
		w, h      int
		batch     int
	}{
		{"ddim native size", "ddim", 0, 0, 1},
		{"euler 48x64 batch 2", "euler", 48, 64, 2},
		{"dpm++2m", "dpm++2m", 32, 32, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := graph(t,
				node{"prompt", "EncodeText", map[string]any{"model": tinyModel, "text": "a photo of a person with blue hair"}},
				node{"face", "RandomEmbedding", map[string]any{"model": tinyModel, "seed": 3}},
				node{"sampler", "Face0Sampler", map[string]any{"model": tinyModel, "positive": link("prompt", "CONDITIONING"),
					"face_embedding": link("face", "embedding"), "seed": 1, "steps": 12, "scheduler": tc.scheduler,
					"width": tc.w, "height": tc.h, "batch_size": tc.batch}},
				node{"decode", "Decode", map[string]any{"model": tinyModel, "latent": link("sampler", "LATENT")}},
				node{"save", "SaveImage", map[string]any{"images": link("decode", "IMAGE"), "filename_prefix": "t/" + tc.scheduler}},
			)
			res, rec, err := r.run(context.Background(), t, w)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(res.Failed) > 0 {
				t.Fatalf("failed: %v", res.Failed)
			}
			files, _ := filepath.Glob(filepath.Join(r.dirs.Output, "t", tc.scheduler+"_*.png"))
			if len(files) != tc.batch {
				t.Fatalf("saved %v, want %d images", files, tc.batch)
			}
			wantW, wantH := 32, 32
			if tc.w > 0 {
				wantW, wantH = tc.w, tc.h
			}
			for _, f := range files {
				data, _ := os.ReadFile(f)
				img, err := png.Decode(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if b := img.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
					t.Errorf("%s is %dx%d, want %dx%d", f, b.Dx(), b.Dy(), wantW, wantH)
				}
				os.Remove(f)
			}
			var progress []int64
			for _, e := range rec.Of(events.Progress) {
				if e.Node == "sampler" {
					progress = append(progress, e.Value)
				}
			}
			if len(progress) != 12 || progress[11] != 12 {
				t.Errorf("sampler progress %v, want 1..12", progress)
			}
		})
	}
}

// TestPreviews: a run long enough to watch shows latent previews (a run
// shorter than the preview gap, 250 ms, shows none by design).
func TestPreviews(t *testing.T) {
	r := newRig(t, modelsDir)
	w := samplerGraph(t, tinyModel, 5, map[string]any{"steps": 60, "width": 256, "height": 256, "c": 0.5, "a": 0.5})
	_, rec, err := r.run(context.Background(), t, w, "sampler")
	if err != nil {
		t.Fatal(err)
	}
	var previews []events.Event
	for _, e := range rec.Of(events.Preview) {
		if e.Node == "sampler" {
			previews = append(previews, e)
		}
	}
	t.Logf("%d previews; %s", len(previews), samplerLog(rec))
	if len(previews) == 0 {
		t.Fatal("no preview from a run of more than 250 ms")
	}
	img, err := png.Decode(bytes.NewReader(previews[0].Data))
	if err != nil {
		t.Fatalf("preview is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 256 || b.Dy() != 256 {
		t.Errorf("preview is %v, want the 32x32 latent shown at 256x256", b)
	}
}

// TestSameSeedBitIdentical: a sample depends only on its own seed, never on
// what else is in the batch or on the run before it.
func TestSameSeedBitIdentical(t *testing.T) {
	r := newRig(t, modelsDir)
	for _, tc := range []struct {
		name string
		opts map[string]any
	}{
		{"cfg", nil},
		{"four branches", map[string]any{"c": 0.5, "a": 0.3}},
		{"embedding noise", map[string]any{"embedding_noise": 0.2}},
		{"euler", map[string]any{"scheduler": "euler"}},
		{"ddim eta 1", map[string]any{"eta": 1.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			with := func(extra map[string]any) map[string]any {
				m := map[string]any{}
				for k, v := range tc.opts {
					m[k] = v
				}
				for k, v := range extra {
					m[k] = v
				}
				return m
			}
			a, _, _ := r.latentOf(t, samplerGraph(t, tinyModel, 5, with(nil)))
			b, _, _ := r.latentOf(t, samplerGraph(t, tinyModel, 5, with(nil)))
			if !bitEqual(a, b) {
				t.Fatal("two runs with the same seed differ")
			}
			next, _, _ := r.latentOf(t, samplerGraph(t, tinyModel, 5, with(map[string]any{"seed": 43})))
			batch, shape, _ := r.latentOf(t, samplerGraph(t, tinyModel, 5, with(map[string]any{"batch_size": 3})))
			if shape[0] != 3 {
				t.Fatalf("batch latent shape %v", shape)
			}
			n := len(a)
			if !bitEqual(batch[:n], a) {
				t.Errorf("sample 0 of a batch of 3 differs from the same seed alone (max diff %g)", maxDiff(batch[:n], a))
			}
			if !bitEqual(batch[n:2*n], next) {
				t.Errorf("sample 1 of a batch of 3 differs from seed+1 alone (max diff %g)", maxDiff(batch[n:2*n], next))
			}
			if bitEqual(a, next) {
				t.Error("seeds 42 and 43 gave the same latent")
			}
		})
	}
}

func bitEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func latentBytes(x []float32) string {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, x)
	return buf.String()
}

// TestGuidanceChangesOutput: every guidance weight reaches the result, and
// the face does.
func TestGuidanceChangesOutput(t *testing.T) {
	r := newRig(t, modelsDir)
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		face int
		opts map[string]any
	}{
		{"default", 5, nil},
		{"w=3", 5, map[string]any{"w": 3.0}},
		{"c=0.5", 5, map[string]any{"c": 0.5}},
		{"c=0.5 a=0.5", 5, map[string]any{"c": 0.5, "a": 0.5}},
		{"c=1.4 a=1", 5, map[string]any{"c": 1.4, "a": 1.0}},
		{"other face", 6, nil},
		{"no face", -1, nil},
		{"embedding noise", 5, map[string]any{"embedding_noise": 0.3}},
		{"eta", 5, map[string]any{"eta": 1.0}},
	} {
		x, _, _ := r.latentOf(t, samplerGraph(t, tinyModel, tc.face, tc.opts))
		k := latentBytes(x)
		if prev, ok := seen[k]; ok {
			t.Errorf("%s gives the same latent as %s", tc.name, prev)
		}
		seen[k] = tc.name
	}
}

// TestZeroWeightBranchesSkipped reads the UNet batch from the sampler's
// debug log line: only branches with a non-zero weight run.
func TestZeroWeightBranchesSkipped(t *testing.T) {
	r := newRig(t, modelsDir)
	for _, tc := range []struct {
		name     string
		face     int
		opts     map[string]any
		batch    int
		branches string
	}{
		{"paper default c=1", 5, nil, 2, "uncond text+face"},
		{"c=0.5 a=0", 5, map[string]any{"c": 0.5}, 3, "uncond text text+face"},
		{"c=0.5 a=0.5: all four", 5, map[string]any{"c": 0.5, "a": 0.5}, 4, "uncond text face text+face"},
		{"c=0.5 a=1", 5, map[string]any{"c": 0.5, "a": 1.0}, 3, "uncond face text+face"},
		{"c=0 a=0", 5, map[string]any{"c": 0.0}, 2, "uncond text"},
		{"w=1: no unconditioned", 5, map[string]any{"w": 1.0}, 1, "text+face"},
		{"four branches, batch 2", 5, map[string]any{"c": 0.5, "a": 0.5, "batch_size": 2}, 8, "uncond text face text+face"},
		{"no face merges face branches", -1, map[string]any{"c": 0.5, "a": 0.5}, 2, "uncond text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, line := r.latentOf(t, samplerGraph(t, tinyModel, tc.face, tc.opts))
			calls, batch, branches, _ := parseLog(t, line)
			if calls != 8 || batch != tc.batch || branches != tc.branches {
				t.Errorf("%d calls of batch %d, branches [%s]; want 8 of %d, [%s]", calls, batch, branches, tc.batch, tc.branches)
			}
		})
	}
}

// TestCancelWithinStep cancels a long run after a few steps and watches the
// plugin process's CPU time: once a step's time has passed since the
// cancel, the plugin must be idle (onnxruntime's running call is
// terminated, and the loop checks between steps), and it must still work.
func TestCancelWithinStep(t *testing.T) {
	r := newRig(t, modelsDir)
	_, _, line := r.latentOf(t, samplerGraph(t, tinyModel, 5, nil))
	_, _, _, pid := parseLog(t, line)

	w := samplerGraph(t, tinyModel, 5, map[string]any{"steps": 400, "width": 256, "height": 256, "c": 0.5, "a": 0.5})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plan, err := r.catalog.Compile(w, []string{"sampler"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stepTimes []time.Time
	sink := events.SinkFunc(func(e events.Event) {
		if e.Type == events.Progress && e.Node == "sampler" {
			mu.Lock()
			defer mu.Unlock()
			stepTimes = append(stepTimes, time.Now())
			if e.Value >= 5 {
				cancel()
			}
		}
	})
	if _, err := r.engine.Run(ctx, plan, runOpts(sink)); err == nil {
		t.Fatal("run was not interrupted")
	}
	mu.Lock()
	n := len(stepTimes)
	if n < 5 {
		mu.Unlock()
		t.Fatalf("the run ended after %d steps: %v", n, err)
	}
	step := stepTimes[n-1].Sub(stepTimes[1]) / time.Duration(n-2)
	mu.Unlock()

	// From one step (plus scheduling slack) after the cancel on, the
	// plugin must burn no CPU; a loop still running would burn all of it.
	time.Sleep(step + 50*time.Millisecond)
	before := cpuTicks(t, pid)
	time.Sleep(300 * time.Millisecond)
	busy := time.Duration(cpuTicks(t, pid)-before) * 10 * time.Millisecond
	t.Logf("step %v; plugin CPU in the 300 ms after cancel+step: %v", step, busy)
	if busy > 50*time.Millisecond {
		t.Errorf("the plugin used %v of CPU in the 300 ms starting one step (%v) after the cancel: the sampler kept running", busy, step)
	}
	// The plugin is still usable afterwards.
	if _, _, line := r.latentOf(t, samplerGraph(t, tinyModel, 5, nil)); line == "" {
		t.Error("no run after cancel")
	}
}

// cpuTicks is a process's user+system CPU time in clock ticks (1/100 s on
// Linux), from /proc/PID/stat.
func cpuTicks(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("cannot read the plugin's CPU time: %v", err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func TestWrongSpaceIsValidationError(t *testing.T) {
	r := newRig(t, modelsDir)
	w := graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": tinyModel, "text": "x"}},
		node{"face", "RandomEmbedding", map[string]any{"model": otherModel, "seed": 1}},
		node{"sampler", "Face0Sampler", map[string]any{"model": tinyModel, "positive": link("prompt", "CONDITIONING"), "face_embedding": link("face", "embedding")}},
	)
	_, _, err := r.run(context.Background(), t, w, "sampler")
	if err == nil || !strings.Contains(err.Error(), "other-64") || !strings.Contains(err.Error(), "faceapi-128") {
		t.Fatalf("want a validation error naming both spaces, got %v", err)
	}
}

func TestSizeMustBeMultipleOf8(t *testing.T) {
	r := newRig(t, modelsDir)
	_, _, err := r.run(context.Background(), t, samplerGraph(t, tinyModel, 5, map[string]any{"width": 36}), "sampler")
	if err == nil || !strings.Contains(err.Error(), "width") {
		t.Fatalf("want a validation error for width 36, got %v", err)
	}
}

// Switching a workflow with eta 1 (the default workflow) to euler is
// refused when the workflow is checked, with what to change, not when the
// sampler runs.
func TestEtaOnlyForDDIM(t *testing.T) {
	r := newRig(t, modelsDir)
	_, err := r.catalog.Compile(samplerGraph(t, tinyModel, 5, map[string]any{"eta": 1.0, "scheduler": "euler"}), []string{"sampler"})
	var ve *engine.ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Input != "eta" || !strings.Contains(err.Error(), "only the ddim scheduler takes eta") || !strings.Contains(err.Error(), "set eta to 0") {
		t.Fatalf("eta 1 with euler: %v; want a validation error on eta saying what to change", err)
	}
	if _, err := r.catalog.Compile(samplerGraph(t, tinyModel, 5, map[string]any{"eta": 0, "scheduler": "euler"}), []string{"sampler"}); err != nil {
		t.Fatalf("eta 0 with euler: %v", err)
	}
}

// A model that is not in the models folder is refused with where models
// are looked for and how to add one.
func TestMissingModelHint(t *testing.T) {
	r := newRig(t, modelsDir)
	_, err := r.catalog.Compile(samplerGraph(t, "face0-synthfaces", 5, nil), []string{"sampler"})
	if err == nil || !strings.Contains(err.Error(), "models are the folders of "+modelsDir) || !strings.Contains(err.Error(), "make example-plugin") {
		t.Fatalf("a model that is not there: %v", err)
	}
}

// TestExampleWorkflow runs examples/workflows/face0-tiny.json as saved, on a
// models folder holding the tiny model under the name it uses.
func TestExampleWorkflow(t *testing.T) {
	r := newRig(t, modelsDir)
	w, _, err := workflow.ReadFile(filepath.Join("..", "..", "examples", "workflows", "face0-tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := r.run(context.Background(), t, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Executed) != 5 {
		t.Errorf("executed %v, want all 5 nodes", res.Executed)
	}
	if files, _ := filepath.Glob(filepath.Join(r.dirs.Output, "face0", "tiny_*.png")); len(files) != 1 {
		t.Errorf("saved %v, want one image", files)
	}
}
