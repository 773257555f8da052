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
	if !strings.Contains(out, "ok (embedding space synthfaces-attr-64, 64-d") {
		t.Errorf("models check: %s", out)
	}
	// Usage errors exit 2.
	cmd := exec.Command(face0Bin, "train")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("face0 train without a dataset: %v", err)
	}
}
