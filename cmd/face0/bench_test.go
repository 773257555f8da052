package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// face0 bench runs from the repository with nothing but the binary: its
// trivial pack is built in. One round of each figure, without the model.
func TestBenchRuns(t *testing.T) {
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(face0Bin, "bench", "--runs", "1", "--tensor-runs", "1", "--workflow-runs", "0", "--mb", "2")
	cmd.Dir = root
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("face0 bench: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"trivial node round trip", "100-node chain, first run, with the cache", "per hop, 2 MiB passed on (vs memcpy)", "memcpy of 2 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
