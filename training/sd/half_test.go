package sd

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers/layerstest"
)

// TestHalfExport: the float16 UNet keeps the float32 interface, halves the
// weight bytes, and gives the float32 UNet's output to fp16 rounding.
func TestHalfExport(t *testing.T) {
	orttest.Require(t)
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	in := testInputs(c, 2, 16, 77)
	run := func(half bool) ([]float32, int64) {
		dir := t.TempDir()
		if err := WriteONNXWith(dir, c, w.Clone(), ExportOptions{Half: half, Consume: true}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, sdmodel.UNetFile)
		info, err := onnx.Inspect(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range append(slices.Clone(info.Inputs), info.Outputs...) {
			if ti.Name != sdmodel.InTimestep && ti.DType != onnx.Float {
				t.Errorf("half=%v: %s is %s, want the float32 interface", half, ti.Name, ti.DType)
			}
		}
		s, err := ort.Load(path, ort.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.Run(map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(in.sample, int64(in.B), int64(c.InChannels), int64(in.H), int64(in.W)),
			sdmodel.InTimestep: ort.F32(in.ts, int64(len(in.ts))),
			sdmodel.InContext:  ort.F32(in.ctx, int64(in.B), int64(in.L), int64(c.CrossAttentionDim)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res[sdmodel.OutNoise].Float32(), info.FileBytes
	}
	full, fullBytes := run(false)
	half, halfBytes := run(true)
	t.Logf("model file: %d bytes float32, %d float16", fullBytes, halfBytes)
	if halfBytes > fullBytes*6/10 {
		t.Errorf("the float16 file is %d bytes against %d: weights not halved", halfBytes, fullBytes)
	}
	layerstest.Compare(t, "float16 vs float32 UNet", half, full, 1e-2)
}

// TestReadONNX reads the weights back from the export, float32 exactly,
// float16 to its rounding.
func TestReadONNX(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	for _, half := range []bool{false, true} {
		dir := t.TempDir()
		if err := WriteONNXWith(dir, c, w.Clone(), ExportOptions{Half: half}); err != nil {
			t.Fatal(err)
		}
		got, err := ReadONNX(filepath.Join(dir, sdmodel.UNetFile), c)
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range w {
			g := got[name]
			if g == nil || !slices.Equal(g.Shape, x.Shape) {
				t.Fatalf("half=%v: %s read back as %v", half, name, g)
			}
			for i := range x.Data {
				d := float64(g.Data[i] - x.Data[i])
				tol := 0.0
				if half {
					tol = 1e-3 * (1 + abs(float64(x.Data[i])))
				}
				if abs(d) > tol {
					t.Fatalf("half=%v: %s[%d] = %g, exported %g", half, name, i, g.Data[i], x.Data[i])
				}
			}
		}
	}
	// A different config names what does not fit.
	other := c
	other.BlockOutChannels = []int{32, 32}
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w.Clone()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadONNX(filepath.Join(dir, sdmodel.UNetFile), other); err == nil {
		t.Fatal("weights of another config read back without error")
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
