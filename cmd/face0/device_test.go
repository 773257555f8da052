//go:build device

package main

// The device check's inference half (scripts/device-check.sh runs it):
// onnxruntime's CUDA provider on the shipped tiny model and on a random
// full-size SD 1.5 model, fp32 and fp16 UNets, batch 1 and 4, SIZE×SIZE
// (512) for STEPS (20) steps, timed as the sampler runs it (one batched
// UNet call per step: 2 guidance branches × batch rows), plus the text
// encoder and the VAE decoder per image, and one end-to-end `face0 run
// --device cuda` of the text-only default graph through the real nodes.
//
//	DEVICE_CHECK_DIR       work folder (default: temporary)
//	DEVICE_CHECK_PROVIDER  cuda (default) or cpu (to rehearse the check on a CPU)
//	DEVICE_CHECK_ARCH      sd15 (default) or tiny (to rehearse it quickly)
//	DEVICE_CHECK_SIZE      image side (512); DEVICE_CHECK_STEPS (20)
//	DEVICE_CHECK_REPORT    file the table is also written to

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/layers/layerstest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// timing is one measured configuration.
type timing struct {
	model, precision string
	batch, size      int
	load, step, img  float64 // seconds: session loads, per UNet step, per image (text + steps + decode, / batch)
}

// prepareModels writes the random full-size checkpoint and imports it as
// fp32 and fp16 models into dir/models (kept when already there), which
// needs no GPU: the XLA step and the end-to-end run use them even when
// onnxruntime's CUDA provider cannot load.
func prepareModels(t *testing.T, dir, arch string) string {
	models := filepath.Join(dir, "models")
	os.MkdirAll(models, 0o755)
	a := base.SD1()
	if arch == "tiny" {
		a = base.TinyCheckpointArch()
	}
	ck := filepath.Join(dir, "sd15-random.safetensors")
	start := time.Now()
	if _, err := os.Stat(ck); err != nil {
		if err := base.WriteCheckpoint(ck, a, 1, base.WriteCheckpointOptions{FP16: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, half := range []bool{false, true} {
		name := map[bool]string{false: "sd15-fp32", true: "sd15-fp16"}[half]
		if _, err := os.Stat(filepath.Join(models, name)); err == nil {
			continue
		}
		if _, err := base.Import(ck, filepath.Join(models, name), base.ImportOptions{FP16: half}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("checkpoint and imports ready in %.0f s", time.Since(start).Seconds())
	return models
}

// TestDevicePrepare makes the models (scripts/device-check.sh runs it first).
func TestDevicePrepare(t *testing.T) {
	prepareModels(t, envStr("DEVICE_CHECK_DIR", t.TempDir()), envStr("DEVICE_CHECK_ARCH", "sd15"))
}

func TestDeviceCheck(t *testing.T) {
	provider := envStr("DEVICE_CHECK_PROVIDER", "cuda")
	arch := envStr("DEVICE_CHECK_ARCH", "sd15")
	size, steps := envInt("DEVICE_CHECK_SIZE", 512), envInt("DEVICE_CHECK_STEPS", 20)
	if err := ort.Init(); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
	v, _ := ort.RuntimeVersion()
	t.Logf("onnxruntime %s from %s, provider %s", v, ort.LibraryPath(), provider)
	if provider == "cuda" {
		missing, err := ort.MissingCUDALibraries(ort.LibraryPath())
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Fatalf("the CUDA provider cannot load: missing %s", strings.Join(missing, ", "))
		}
	}
	models := prepareModels(t, envStr("DEVICE_CHECK_DIR", t.TempDir()), arch)

	var rows []timing
	shipped, _ := filepath.Abs("../../models/face0-synthfaces")
	cases := []struct {
		dir, name, precision string
		size                 int
	}{
		{shipped, "shipped tiny model", "fp32", 32},
		{filepath.Join(models, "sd15-fp32"), "random SD 1.5", "fp32", size},
		{filepath.Join(models, "sd15-fp16"), "random SD 1.5", "fp16", size},
	}
	for _, c := range cases {
		m, err := sdmodel.Load(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, batch := range []int{1, 4} {
			r, err := timeSampling(m, ort.Options{Provider: provider}, batch, c.size, steps)
			if err != nil {
				t.Fatalf("%s %s batch %d: %v", c.name, c.precision, batch, err)
			}
			r.model, r.precision = c.name, c.precision
			rows = append(rows, r)
			t.Logf("%s %s %dpx batch %d: %.3f s/step, %.2f s/image (loads %.1f s)", r.model, r.precision, r.size, r.batch, r.step, r.img, r.load)
		}
	}
	lines := []string{fmt.Sprintf("| model | UNet | size | batch | s/step | s/image | session loads |"), "|---|---|---|---|---|---|---|"}
	for _, r := range rows {
		lines = append(lines, fmt.Sprintf("| %s | %s | %d | %d | %.3f | %.2f | %.1f s |", r.model, r.precision, r.size, r.batch, r.step, r.img, r.load))
	}
	table := fmt.Sprintf("onnxruntime %s, provider %s, %d steps (one UNet call of 2×batch rows per step: CFG with w=7.5, c=1)\n\n%s\n", v, provider, steps, strings.Join(lines, "\n"))
	t.Log("\n" + table)
	if p := os.Getenv("DEVICE_CHECK_REPORT"); p != "" {
		os.WriteFile(p, []byte(table), 0o644)
	}
}

// timeSampling runs what the sampler runs for batch images of size×size
// over steps steps on opts' device: the text encoder (prompt and empty
// prompt), steps UNet calls of 2·batch rows, and the VAE decoder.
func timeSampling(m *sdmodel.Model, opts ort.Options, batch, size, steps int) (timing, error) {
	r := timing{batch: batch, size: size}
	t0 := time.Now()
	te, err := ort.Load(m.Path(sdmodel.TextEncoderFile), opts)
	if err != nil {
		return r, err
	}
	defer te.Close()
	unet, err := ort.Load(m.Path(sdmodel.UNetFile), opts)
	if err != nil {
		return r, err
	}
	defer unet.Close()
	dec, err := ort.Load(m.Path(sdmodel.VAEDecoderFile), opts)
	if err != nil {
		return r, err
	}
	defer dec.Close()
	r.load = time.Since(t0).Seconds()

	man := m.Manifest
	f := man.VAEScaleFactor
	C, H, W := man.LatentChannels, size/f, size/f
	rows := 2 * batch
	encode := func(text string) ([]float32, error) {
		ids := m.Tokenizer.Tokenize(text, clip.WithContextLength(man.ContextLength), clip.WithPadToken(int32(man.PadToken)))
		var in ort.Tensor
		if m.InputIDsType == onnx.Int64 {
			d := make([]int64, len(ids))
			for i, id := range ids {
				d[i] = int64(id)
			}
			in = ort.I64(d, 1, int64(len(ids)))
		} else {
			in = ort.I32(ids, 1, int64(len(ids)))
		}
		out, err := te.Run(map[string]ort.Tensor{sdmodel.InInputIDs: in})
		if err != nil {
			return nil, err
		}
		return out[sdmodel.OutLastHidden].Float32(), nil
	}
	run := func() (unetSecs float64, err error) {
		cond, err := encode("a photo portrait of a smiling person wearing a red cap")
		if err != nil {
			return 0, err
		}
		uncond, err := encode("")
		if err != nil {
			return 0, err
		}
		ctx := make([]float32, 0, rows*len(cond))
		for range batch {
			ctx = append(ctx, uncond...)
		}
		for range batch {
			ctx = append(ctx, cond...)
		}
		x := layerstest.Randn(rows*C*H*W, 3, 1)
		ts := make([]float32, rows)
		u0 := time.Now()
		for s := range steps {
			for i := range ts {
				ts[i] = float32(999 - s*1000/steps)
			}
			out, err := unet.Run(map[string]ort.Tensor{
				sdmodel.InSample:   ort.F32(x, int64(rows), int64(C), int64(H), int64(W)),
				sdmodel.InTimestep: ort.F32(ts, int64(rows)),
				sdmodel.InContext:  ort.F32(ctx, int64(rows), int64(man.ContextLength), int64(man.TextWidth)),
			})
			if err != nil {
				return 0, err
			}
			eps := out[sdmodel.OutNoise].Float32()
			for i := range x {
				x[i] -= 0.01 * eps[i] // stand-in for the scheduler's update (host arithmetic, negligible)
			}
		}
		unetSecs = time.Since(u0).Seconds()
		if _, err := dec.Run(map[string]ort.Tensor{sdmodel.InLatent: ort.F32(x[:batch*C*H*W], int64(batch), int64(C), int64(H), int64(W))}); err != nil {
			return 0, err
		}
		return unetSecs, nil
	}
	// The first run warms up (cuDNN picks its algorithms); the second is timed.
	if _, err := run(); err != nil {
		return r, err
	}
	t1 := time.Now()
	unetSecs, err := run()
	if err != nil {
		return r, err
	}
	r.step = unetSecs / float64(steps)
	r.img = time.Since(t1).Seconds() / float64(batch)
	return r, nil
}
