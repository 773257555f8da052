//go:build fullsize

package main

// The full-size run (make fullsize): Stable Diffusion 1.5's real
// architecture end to end on this machine, with random weights. It writes
// a full-size SD 1.5 checkpoint in the original single-file layout,
// imports it, runs the default Face0 graph on it (text only: an imported
// model has no projection yet) through the real nodes at 64x64 for 2
// steps, fine-tunes it for 2 steps at 64x64 with face0 train --base,
// samples the exported model with the default graph, face included, and
// checks the imported UNet in onnxruntime against the GoMLX UNet on the
// checkpoint's weights. Each stage runs as its own process; the table
// gives its peak RSS (the process tree: face0 run with its plugin
// processes, sampled every 100 ms, or the largest process's ru_maxrss if
// higher), the disk
// it added and its time.
//
//	go test -tags fullsize -run TestFullSize -v -timeout 3h ./cmd/face0
//
// FACE0_FULLSIZE_DIR chooses the folder (default: a temporary one, removed
// afterwards; about 20 GB are needed), FACE0_FULLSIZE_REPORT a file the
// table is also written to, FACE0_FULLSIZE_EMA=1 trains with the EMA (one
// 3.4 GB copy more).

import (
	"bytes"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/layers/layerstest"
	"github.com/face0/face0/training/sd"
)

type stage struct {
	name    string
	peakKB  int64
	diskB   int64
	seconds float64
	note    string
}

func (s stage) row() string {
	return fmt.Sprintf("| %s | %.2f GiB | %.2f GB | %.0f s | %s |", s.name, float64(s.peakKB)/(1<<20), float64(s.diskB)/1e9, s.seconds, s.note)
}

func duBytes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
	}
	return n
}

// runStage runs the face0 binary (or the test binary) as a child and
// returns its output and peak RSS (ru_maxrss covers the child and the
// descendants it waited for: the plugin processes).
func runStage(t *testing.T, env []string, bin string, args ...string) (string, int64, float64) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The process tree's resident memory (face0 run's plugins are its
	// children), sampled; ru_maxrss below is the largest single process.
	done := make(chan struct{})
	treeKB := make(chan int64)
	go func() {
		var peak int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, treeRSS(cmd.Process.Pid))
			select {
			case <-done:
				treeKB <- peak
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	tree := <-treeKB
	secs := time.Since(start).Seconds()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return out.String(), max(ru.Maxrss, tree), secs
}

// treeRSS sums VmRSS (KB) of pid and its descendants.
func treeRSS(pid int) int64 {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at its ')'.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				if pp, err := strconv.Atoi(f[1]); err == nil {
					children[pp] = append(children[pp], p)
				}
			}
		}
	}
	var sum int64
	stack := []int{pid}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		stack = append(stack, children[p]...)
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					sum += kb
				}
			}
		}
	}
	return sum
}

func TestFullSize(t *testing.T) {
	orttest.Require(t)
	dir := os.Getenv("FACE0_FULLSIZE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	home := filepath.Join(dir, "home")
	models := filepath.Join(home, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		t.Fatal(err)
	}
	var stages []stage
	report := func() {
		lines := []string{"| stage | peak RSS | disk added | time | notes |", "|---|---|---|---|---|"}
		for _, s := range stages {
			lines = append(lines, s.row())
		}
		table := strings.Join(lines, "\n")
		t.Logf("full-size run in %s:\n%s", dir, table)
		if p := os.Getenv("FACE0_FULLSIZE_REPORT"); p != "" {
			os.WriteFile(p, []byte(table+"\n"), 0o644)
		}
	}
	defer report()

	// 1. A random SD 1.5 checkpoint, fp16, original layout (this process).
	ckptPath := filepath.Join(dir, "sd15-random.safetensors")
	arch := base.SD1()
	if os.Getenv("FACE0_FULLSIZE_ARCH") == "tiny" {
		// The same run at tiny width, to check the harness in a minute.
		arch = base.TinyCheckpointArch()
	}
	start := time.Now()
	if _, err := os.Stat(ckptPath); err != nil {
		if err := base.WriteCheckpoint(ckptPath, arch, 1, base.WriteCheckpointOptions{FP16: true}); err != nil {
			t.Fatal(err)
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	stages = append(stages, stage{"write a random SD 1.5 checkpoint (fp16, single file)", ru.Maxrss, duBytes(ckptPath), time.Since(start).Seconds(), "streamed, one tensor at a time"})

	// 2. Import.
	out, peak, secs := runStage(t, nil, face0Bin, "models", "import", ckptPath, "--models", models, "--name", "sd15")
	stages = append(stages, stage{"face0 models import", peak, duBytes(filepath.Join(models, "sd15")), secs, "fp32 ONNX, UNet in a side file"})
	t.Log(out)

	// 3. The default Face0 graph on the imported model, text only (it has
	// no projection yet), 64x64, 2 steps.
	wf := filepath.Join(root(t), "examples", "workflows", "face0-default.json")
	outDir := filepath.Join(dir, "out")
	common := []string{"--home", home, "--input", filepath.Join(root(t), "examples", "inputs"), "--out", outDir, "--plain", "--no-cache", "--device", "cpu",
		"--set", "sampler.steps=2", "--set", "sampler.width=64", "--set", "sampler.height=64", "--set", "sampler.batch_size=1"}
	args := append([]string{"run", wf}, common...)
	args = append(args, "--set", "prompt.model=sd15", "--set", "sampler.model=sd15", "--set", "decode.model=sd15", "--set", "sampler.face_embedding=null")
	out, peak, secs = runStage(t, nil, face0Bin, args...)
	if !strings.Contains(out, ".png") {
		t.Fatalf("no image saved:\n%s", out)
	}
	stages = append(stages, stage{"default graph on the import (text only), 64x64, 2 steps", peak, duBytes(outDir), secs, "EncodeText, Face0Sampler, Decode, SaveImage in plugin processes"})

	// 4. Fine-tune 2 steps at 64x64 on a few synthfaces.
	ds := filepath.Join(dir, "ds")
	if _, err := os.Stat(ds); err != nil {
		runStage(t, nil, face0Bin, "synthfaces", ds, "--train", "2", "--heldout", "0", "--per-identity", "2", "--size", "64")
	}
	tuned := filepath.Join(models, "sd15-face0")
	trainArgs := []string{"train", ds, "--base", filepath.Join(models, "sd15"), "--size", "64", "--face", "synthfaces-id", "--steps", "2", "--batch", "1", "--out", tuned, "--checkpoint-every", "100", "--plain"}
	note := "UNet + projection, AdamW, no EMA"
	if os.Getenv("FACE0_FULLSIZE_EMA") == "1" {
		note = "UNet + projection, AdamW, EMA"
	} else {
		trainArgs = append(trainArgs, "--ema-decay", "0")
	}
	out, peak, secs = runStage(t, nil, face0Bin, trainArgs...)
	t.Log(out)
	stages = append(stages, stage{"face0 train --base, 2 steps at 64x64 (prepare, train, checkpoint, export)", peak, duBytes(tuned, filepath.Join(models, ".train")), secs, note + "; " + lastLine(out)})

	// 5. The default graph, face included, on the exported model.
	args = append([]string{"run", wf}, common...)
	args = append(args, "--set", "prompt.model=sd15-face0", "--set", "sampler.model=sd15-face0", "--set", "decode.model=sd15-face0")
	out, peak, secs = runStage(t, nil, face0Bin, args...)
	if !strings.Contains(out, ".png") {
		t.Fatalf("no image saved:\n%s", out)
	}
	stages = append(stages, stage{"default graph on the export (with the face), 64x64, 2 steps", peak, 0, secs, ""})

	// 6. Parity: the imported UNet in onnxruntime against GoMLX on the
	// checkpoint's weights, one UNet call (a child of this test binary).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, peak, secs = runStage(t, []string{"FACE0_FULLSIZE_PARITY=" + ckptPath + "|" + filepath.Join(models, "sd15")}, self, "-test.run=^TestFullSizeParity$", "-test.v")
	stages = append(stages, stage{"parity: imported UNet (onnxruntime) vs GoMLX UNet on the checkpoint's weights", peak, 0, secs, parityLine(out)})
	if !strings.Contains(out, "--- PASS: TestFullSizeParity") {
		t.Fatalf("parity:\n%s", out)
	}
}

func root(t *testing.T) string {
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "s/step") {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

func parityLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "relative") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestFullSizeParity is stage 6, run as a child by TestFullSize: one UNet
// call at 64x64 (8x8 latent), batch 1, in onnxruntime on the imported model
// and in GoMLX on the weights read from the checkpoint. Tolerance: 1e-3 of
// the output's scale (float32 through 25 resnets and 16 attentions; the
// tiny UNet's parity is 1e-6).
func TestFullSizeParity(t *testing.T) {
	spec := os.Getenv("FACE0_FULLSIZE_PARITY")
	if spec == "" {
		t.Skip("run by TestFullSize")
	}
	ckptPath, modelDir, _ := strings.Cut(spec, "|")
	const B, S, L = 1, 8, 77
	sample := layerstest.Randn(B*4*S*S, 1, 1)
	ts := []float32{500}
	bm, err := base.OpenCheckpoint(ckptPath, base.CheckpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	D := bm.UNet.CrossAttentionDim
	ctx := layerstest.Randn(B*L*D, 2, 1)

	s, err := ort.Load(filepath.Join(modelDir, filepath.FromSlash(sdmodel.UNetFile)), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(map[string]ort.Tensor{
		sdmodel.InSample:   ort.F32(sample, B, 4, S, S),
		sdmodel.InTimestep: ort.F32(ts, B),
		sdmodel.InContext:  ort.F32(ctx, B, L, int64(D)),
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := res[sdmodel.OutNoise].Float32()

	w, err := bm.RawUNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	be, err := training.Backend()
	if err != nil {
		t.Fatal(err)
	}
	want, err := sd.Predict(be, bm.UNet, w, sample, B, S, S, ts, ctx, L, sd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var maxDiff, scale float64
	for i := range want {
		maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	t.Logf("full-size UNet, one call: max |diff| %.3g at output scale %.3g, relative %.3g (tolerance 1e-3)", maxDiff, scale, maxDiff/scale)
	if !(maxDiff <= 1e-3*scale) {
		t.Fatalf("onnxruntime and GoMLX differ by %.3g (scale %.3g)", maxDiff, scale)
	}
}
