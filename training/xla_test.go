package training

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackendProblem: every way GPU training can lack a piece is named,
// with the way out, before GoMLX is asked (which panics or says "no
// plugins found").
func TestBackendProblem(t *testing.T) {
	if err := backendProblem("go:ops_sequential", []string{"go"}); err != nil {
		t.Errorf("the pure-Go backend: %v", err)
	}
	err := backendProblem("xla:cuda", []string{"go"})
	if err == nil || !strings.Contains(err.Error(), "built without GoMLX's XLA backend") || !strings.Contains(err.Error(), "-tags xla") {
		t.Errorf("xla in a binary without it: %v", err)
	}
	if err := backendProblem("tpu", []string{"go"}); err == nil || !strings.Contains(err.Error(), `no GoMLX backend "tpu"`) {
		t.Errorf("an unknown backend: %v", err)
	}
	if err := backendProblem("xla:cpu", []string{"go", "xla"}); err != nil {
		t.Errorf("xla:cpu needs no GPU: %v", err)
	}

	empty := t.TempDir()
	err = cudaProblem(nil, []string{empty}, true)
	for _, want := range []string{"an NVIDIA GPU (no /dev/nvidia*", "pjrt_c_api_cuda_plugin.so (looked in " + empty, "unset GOMLX_NO_AUTO_INSTALL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no GPU, no plugin: the error does not say %q: %v", want, err)
		}
	}
	// A GPU but no plugin and auto-install allowed: go-xla fetches it, so
	// only the driver can be missing.
	if err := cudaProblem([]string{"/dev/nvidia0"}, []string{empty}, false); err != nil && strings.Contains(err.Error(), "PJRT plugin") {
		t.Errorf("auto-install allowed: %v", err)
	}

	// A plugin with its nvidia/ folder: XLA is pointed at it.
	lib := filepath.Join(t.TempDir(), "go-xla")
	nv := filepath.Join(lib, "nvidia")
	if err := os.MkdirAll(nv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nv, "pjrt_c_api_cuda_plugin.so"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(xlaFlagsEnv, "--xla_dump_to=/tmp/x")
	err = cudaProblem([]string{"/dev/nvidia0"}, []string{lib, nv}, true)
	if err != nil && strings.Contains(err.Error(), "PJRT plugin") {
		t.Errorf("plugin present: %v", err)
	}
	if got := os.Getenv(xlaFlagsEnv); got != "--xla_dump_to=/tmp/x "+cudaDataDirFlag+"="+nv {
		t.Errorf("XLA_FLAGS = %q", got)
	}
	t.Setenv(xlaFlagsEnv, cudaDataDirFlag+"=/opt/cuda")
	_ = cudaProblem([]string{"/dev/nvidia0"}, []string{nv}, true)
	if got := os.Getenv(xlaFlagsEnv); got != cudaDataDirFlag+"=/opt/cuda" {
		t.Errorf("a user's cuda data dir was replaced: %q", got)
	}
}
