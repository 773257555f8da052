package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/training/base"
)

// TestModelsImport: `face0 models import` turns a single-file checkpoint
// into a model that samples from text at once (also with --device), lists
// it as text-only, and refuses a LoRA naming what it is.
func TestModelsImport(t *testing.T) {
	orttest.Require(t)
	c := newCLI(t)
	models := filepath.Join(c.home, "models")
	src := filepath.Join(t.TempDir(), "my-sd15.safetensors")
	if err := base.WriteCheckpoint(src, base.TinyCheckpointArch(), 1, base.WriteCheckpointOptions{FP16: true, EMA: true}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := modelsCmd(t, c, "models", "import", src, "--models", models, "--fp16")
	if code != 0 || !strings.Contains(out, "imported") || !strings.Contains(out, "ema UNet weights") {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = modelsCmd(t, c, "models", "list", "--models", models)
	if !strings.Contains(out, "my-sd15\tok, no face projection yet") {
		t.Errorf("list: %s", out)
	}
	_, errOut, code = modelsCmd(t, c, "models", "import", src, "--models", models)
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("a second import: exit %d, %s", code, errOut)
	}
	lora := filepath.Join(t.TempDir(), "face-lora.safetensors")
	if err := safetensors.Write(lora, map[string]safetensors.Tensor{"lora_unet_mid_block_attentions_0_proj_out.lora_down.weight": safetensors.FromFloat32([]int{1}, []float32{1})}); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = modelsCmd(t, c, "models", "import", lora, "--models", models)
	if code == 0 || !strings.Contains(errOut, "a LoRA") {
		t.Errorf("a LoRA: exit %d, %s", code, errOut)
	}

	wf := filepath.Join(t.TempDir(), "text.json")
	if err := os.WriteFile(wf, []byte(`{"version": 1, "nodes": [
  {"id": "prompt", "type": "EncodeText", "inputs": {"model": "my-sd15", "text": "a photo of a cat"}},
  {"id": "sampler", "type": "Face0Sampler", "inputs": {"model": "my-sd15", "positive": {"node": "prompt", "output": "CONDITIONING"}, "steps": 2}},
  {"id": "decode", "type": "Decode", "inputs": {"model": "my-sd15", "latent": {"node": "sampler", "output": "LATENT"}}},
  {"id": "save", "type": "SaveImage", "inputs": {"images": {"node": "decode", "output": "IMAGE"}}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = c.run(t, "run", wf, "--device", "cpu", "--plain", "--no-cache")
	if code != 0 || !strings.Contains(out, ".png") || !strings.Contains(errOut, "device cpu: prompt, sampler, decode") {
		t.Fatalf("text-only run: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = c.run(t, "run", wf, "--device", "cuda", "--plain", "--no-cache")
	if code == 0 {
		t.Skip("the cuda device runs on this machine")
	}
	if !strings.Contains(errOut, "cuda execution provider is not available") {
		t.Errorf("--device cuda without a GPU: %s", errOut)
	}
}

// modelsCmd runs a face0 command that takes no folder flags, with
// FACE0_HOME set to the CLI's home.
func modelsCmd(t *testing.T, c *cli, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(face0Bin, args...)
	cmd.Env = append(os.Environ(), "FACE0_HOME="+c.home)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}
