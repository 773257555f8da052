package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ort"
)

// TestSynthfacesTrainCommands runs `face0 synthfaces`, `face0 train`, a
// resumed `face0 train --resume` and `face0 models check` on the result.
func TestSynthfacesTrainCommands(t *testing.T) {
	if err := ort.Init(); errors.Is(err, ort.ErrNoLibrary) {
		t.Skipf("skipping: %v", err)
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(face0Bin, args...)
		cmd.Dir = dir
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("face0 %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o.String(), e.String())
		}
		return o.String() + e.String()
	}
	ds := filepath.Join(dir, "sf")
	out := run("synthfaces", ds, "--train", "4", "--heldout", "1", "--per-identity", "2", "--size", "32", "--seed", "1")
	if !strings.Contains(out, "wrote 10 images") {
		t.Errorf("synthfaces: %s", out)
	}
	model := filepath.Join(dir, "models", "m")
	out = run("train", ds, "--out", model, "--steps", "4", "--batch", "4", "--checkpoint-every", "2", "--plain")
	if !strings.Contains(out, "wrote "+model+": 4 steps") || !strings.Contains(out, "train ") {
		t.Errorf("train: %s", out)
	}
	out = run("train", ds, "--out", model, "--steps", "6", "--batch", "4", "--resume", "--plain")
	if !strings.Contains(out, "resumed from") || !strings.Contains(out, "reused") || !strings.Contains(out, ": 6 steps") {
		t.Errorf("train --resume: %s", out)
	}
	out = run("models", "check", model)
	if !strings.Contains(out, "ok (embedding space synthfaces-id-64, 64-d") {
		t.Errorf("models check: %s", out)
	}
	// Usage errors exit 2.
	cmd := exec.Command(face0Bin, "train")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("face0 train without a dataset: %v", err)
	}
}

// TestTrainDefaultsDriveTheDefaultWorkflow: `face0 train DATASET` with its
// defaults (only the step counts shortened) writes a model that the default
// workflow drives with a face and a prompt: its embedding space is the one
// EmbedFace gives (synthfaces-id-64, not the metadata's attribute codes, or
// the workflow is refused with "different spaces"), its tokenizer is CLIP's
// and its text encoder was pretrained. TestSoakTrainDefaults checks that a
// longer run follows the face and the caption.
func TestTrainDefaultsDriveTheDefaultWorkflow(t *testing.T) {
	if err := ort.Init(); errors.Is(err, ort.ErrNoLibrary) {
		t.Skipf("skipping: %v", err)
	}
	c := newCLI(t)
	ds := filepath.Join(t.TempDir(), "sf")
	if _, stderr, code := c.raw(t, "synthfaces", ds, "--train", "20", "--heldout", "1", "--per-identity", "4", "--size", "64", "--seed", "1"); code != 0 {
		t.Fatalf("synthfaces: exit %d\n%s", code, stderr)
	}
	model := filepath.Join(c.home, "models", "mine")
	stdout, stderr, code := c.raw(t, "train", ds, "--out", model, "--steps", "3", "--text-pretrain", "3", "--plain")
	if code != 0 {
		t.Fatalf("train: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "face embeddings: synthfaces-id") || !strings.Contains(stderr, "text encoder pretrained") || !strings.Contains(stderr, "(clip vocabulary)") {
		t.Errorf("train did not use the shipped model's recipe:\n%s", stderr)
	}
	stdout, stderr, code = c.run(t, "run", "examples/workflows/face0-default.json", "--plain",
		"--set", "prompt.model=mine", "--set", "sampler.model=mine", "--set", "decode.model=mine", "--set", "sampler.steps=2")
	if code != 0 {
		t.Fatalf("the default workflow on the trained model: exit %d\n%s", code, stderr)
	}
	if pngs, _ := filepath.Glob(filepath.Join(c.out, "face0", "default_*.png")); len(pngs) != 4 {
		t.Fatalf("the default workflow saved %v, want 4 images\n%s", pngs, stdout)
	}
}
