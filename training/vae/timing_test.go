package vae

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/training/layers/layerstest"
	"github.com/face0/face0/training/model"
)

// timeEncoder returns the GoMLX encoder's seconds per image on batch B of
// S×S images (best of runs, after a warm-up run that also compiles).
func timeEncoder(t *testing.T, c Config, w model.Weights, B, S, runs int) float64 {
	sp := EncoderSpecs(c)
	P := len(sp)
	exec := MustNewExec(layerstest.Backend(t), func(x []*Node) *Node {
		m, _ := Encode(c, model.LookupFrom(sp, x[:P]), x[P], Options{})
		return m
	})
	defer exec.Finalize()
	args := append(weightArgs(sp, w), tensors.FromFlatDataAndDimensions(layerstest.Randn(B*3*S*S, 1, 1), B, 3, S, S))
	exec.MustExec(args...)
	best := 1e9
	for range runs {
		start := time.Now()
		exec.MustExec(args...)
		best = min(best, time.Since(start).Seconds())
	}
	return best / float64(B)
}

// timeORTEncoder exports the encoder and returns onnxruntime's seconds per
// image (intra-op threads 2) on batch B of S×S images.
func timeORTEncoder(t *testing.T, c Config, w model.Weights, B, S, runs int) float64 {
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	s, err := ort.Load(filepath.Join(dir, EncoderFile), ort.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := map[string]ort.Tensor{"sample": ort.F32(layerstest.Randn(B*3*S*S, 1, 1), int64(B), 3, int64(S), int64(S))}
	if _, err := s.Run(in); err != nil {
		t.Fatal(err)
	}
	best := 1e9
	for range runs {
		start := time.Now()
		if _, err := s.Run(in); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start).Seconds())
	}
	return best / float64(B)
}

// TestEncoderTiming measures the tiny encoder on one 256×256 image (the
// dataset resolution) and estimates SD 1.x's from the FLOP ratio at the
// same effective rate. VAE_BENCH_FULL=1 also measures the full-width
// encoder (GoMLX at 128×128, onnxruntime at 256×256): tens of seconds.
func TestEncoderTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	tiny, sd1 := Tiny(), SD1()
	ft, fs := tiny.EncoderFLOPs(1, 256, 256), sd1.EncoderFLOPs(1, 256, 256)
	t.Logf("encoder FLOPs per 256×256 image: tiny %.3g, SD 1.x %.3g (%.0f×); SD 1.x decoder per 32×32 latent %.3g",
		float64(ft), float64(fs), float64(fs)/float64(ft), float64(sd1.DecoderFLOPs(1, 32, 32)))
	w := layerstest.Perturbed(NewWeights(tiny, 3), Specs(tiny), 0.05)
	sec := timeEncoder(t, tiny, w, 1, 256, 2)
	rate := float64(ft) / sec
	t.Logf("GoMLX pure-Go, tiny encoder, 256×256: %.3f s/image (%.2f GFLOP/s); SD 1.x at that rate ≈ %.0f s/image",
		sec, rate/1e9, float64(fs)/rate)
	if os.Getenv("VAE_BENCH_FULL") == "" {
		return
	}
	ws := NewWeights(sd1, 1)
	sec = timeEncoder(t, sd1, ws, 1, 128, 1)
	rate = float64(sd1.EncoderFLOPs(1, 128, 128)) / sec
	t.Logf("GoMLX pure-Go, SD 1.x encoder, 128×128: %.2f s/image (%.2f GFLOP/s) → 256×256 ≈ %.0f s/image", sec, rate/1e9, float64(fs)/rate)
	orttest.Require(t)
	sec = timeORTEncoder(t, tiny, w, 1, 256, 3)
	t.Logf("onnxruntime (2 threads), tiny encoder, 256×256: %.3f s/image", sec)
	sec = timeORTEncoder(t, sd1, ws, 1, 256, 1)
	t.Logf("onnxruntime (2 threads), SD 1.x encoder, 256×256: %.2f s/image (%.1f GFLOP/s)", sec, float64(fs)/sec/1e9)
}
