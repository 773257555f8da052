package onnx_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
)

// TestHalfGraph builds a small half-precision block as an fp16 UNet uses
// it (float32 in and out, fp16 weights and compute, GELU and attention with
// constants of the matching type) and runs it: onnxruntime's CPU provider
// accepts it (it computes fp16 nodes it has no kernel for in float32), and
// the result is the float32 graph's within fp16 rounding.
func TestHalfGraph(t *testing.T) {
	orttest.Require(t)
	r := rand.New(rand.NewPCG(1, 2))
	x := randT(r, 2, 5, 8)
	w := randT(r, 8, 8)
	build := func(half bool) *onnx.Graph {
		g := onnx.NewGraph("half")
		in := g.Input("x", onnx.Float, "n", 5, 8)
		var h, W onnx.Value
		if half {
			h, W = g.Cast(in, onnx.Float16), g.InitializerHalf("w", w.data, 8, 8)
		} else {
			h, W = in, g.Initializer("w", w.data, 8, 8)
		}
		y := g.Gelu(g.Linear(h, W, onnx.Value{}))
		y = g.Attention(y, y, y, 2, 8, onnx.Value{})
		y = g.QuickGelu(y)
		if half {
			y = g.Cast(y, onnx.Float)
		}
		g.Output("y", y, "n", 5, 8)
		return g
	}
	run := func(half bool) []float32 {
		path := filepath.Join(t.TempDir(), "m.onnx")
		if err := build(half).Save(path); err != nil {
			t.Fatal(err)
		}
		s, err := ort.Load(path, ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(map[string]ort.Tensor{"x": x.ort()})
		if err != nil {
			t.Fatal(err)
		}
		return out["y"].Float32()
	}
	full, half := run(false), run(true)
	var maxDiff, scale float64
	for i := range full {
		maxDiff = max(maxDiff, math.Abs(float64(full[i]-half[i])))
		scale = max(scale, math.Abs(float64(full[i])))
	}
	t.Logf("fp16 vs fp32: max diff %.2g at output scale %.2g", maxDiff, scale)
	if maxDiff > 2e-2*scale || maxDiff == 0 {
		t.Fatalf("fp16 graph differs from fp32 by %g (scale %g): want within fp16 rounding, and not identical", maxDiff, scale)
	}
}

// TestReadFloats reads weights back from a saved model, inline and from an
// external-data side file, float32 and float16.
func TestReadFloats(t *testing.T) {
	g := onnx.NewGraph("w")
	x := g.Input("x", onnx.Float, 4)
	a := g.Initializer("a", []float32{1, 2, 3, 4}, 4)
	b := g.InitializerHalf("b", make([]float32, 600), 600) // 1200 bytes: external
	g.Output("y", g.Add(x, a))
	g.Output("z", g.Cast(b, onnx.Float))
	for _, ext := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.onnx")
		var opts []onnx.SaveOption
		if ext {
			opts = append(opts, onnx.ExternalDataThreshold(0))
		}
		if err := g.Save(path, opts...); err != nil {
			t.Fatal(err)
		}
		got := map[string][]float32{}
		err := onnx.ReadFloats(path, func(name string, shape []int, data []float32) error {
			got[name] = data
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got["a"]) != 4 || got["a"][3] != 4 || len(got["b"]) != 600 {
			t.Errorf("external %v: read %v", ext, got)
		}
	}
}
