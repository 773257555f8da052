package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainSaysWhatGPUTrainingLacks: asking a build without the XLA
// backend to train on it is a one-line error with the way out, before any
// dataset work, never a Go panic (GoMLX panics on an unknown backend).
func TestTrainSaysWhatGPUTrainingLacks(t *testing.T) {
	ds := t.TempDir()
	cmd := exec.Command(face0Bin, "train", ds, "--out", filepath.Join(t.TempDir(), "m"))
	cmd.Env = append(os.Environ(), "GOMLX_BACKEND=xla:cuda", "FACE0_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("training on xla:cuda in a build without it succeeded:\n%s", out)
	}
	s := string(out)
	if strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") {
		t.Fatalf("a panic instead of an error:\n%s", s)
	}
	if !strings.Contains(s, "built without GoMLX's XLA backend") || !strings.Contains(s, "-tags xla") {
		t.Errorf("the error does not say what is missing:\n%s", s)
	}
}
