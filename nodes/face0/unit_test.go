package face0

import (
	"slices"
	"strings"
	"testing"

	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/onnx"
	pb "github.com/face0/face0/plugins/proto"
)

// These run without onnxruntime.

func TestBranchPlan(t *testing.T) {
	for _, tc := range []struct {
		name           string
		w, c, a        float64
		face, negative bool
		want           []f0.Branch
	}{
		{"paper default", 7.5, 1, 0, true, false, []f0.Branch{f0.Uncond, f0.TextFace}},
		{"all four", 7.5, 0.5, 0.5, true, false, []f0.Branch{f0.Uncond, f0.Text, f0.Face, f0.TextFace}},
		{"no face: text+face folds into text, face into uncond", 7.5, 0.5, 0.5, false, false, []f0.Branch{f0.Uncond, f0.Text}},
		{"no face, negative: face-only stays (empty prompt, not the negative)", 7.5, 0.5, 0.5, false, true, []f0.Branch{f0.Uncond, f0.Text, f0.Face}},
		{"w=1 no face", 1, 1, 0, false, false, []f0.Branch{f0.Text}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := branchPlan(f0.Guidance{W: tc.w, C: tc.c, A: tc.a}, tc.face, tc.negative)
			if !slices.Equal(p.Branches, tc.want) {
				t.Errorf("branches %v, want %v", p.Branches, tc.want)
			}
			sum := 0.0
			for _, c := range p.Coeffs {
				sum += c
			}
			if sum < 1-1e-12 || sum > 1+1e-12 {
				t.Errorf("coefficients %v sum to %g, want 1", p.Coeffs, sum)
			}
		})
	}
}

func TestTimestepTensor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		info  onnx.TensorInfo
		shape []int64
		dtype onnx.DType
	}{
		{"diffusers float [batch]", onnx.TensorInfo{DType: onnx.Float, Dims: []onnx.Dim{{Size: -1, Name: "batch"}}}, []int64{4}, onnx.Float},
		{"int64 [1]", onnx.TensorInfo{DType: onnx.Int64, Dims: []onnx.Dim{{Size: 1}}}, []int64{1}, onnx.Int64},
		{"scalar", onnx.TensorInfo{DType: onnx.Float, Dims: []onnx.Dim{}}, nil, onnx.Float},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := timestepTensor(tc.info, 981, 4)
			if !slices.Equal(got.Shape, tc.shape) || got.DType() != tc.dtype {
				t.Errorf("shape %v %s, want %v %s", got.Shape, got.DType(), tc.shape, tc.dtype)
			}
		})
	}
}

func TestToByte(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint8
	}{{-1, 0}, {1, 255}, {0, 128}, {-5, 0}, {5, 255}, {float32(nan()), 0}} {
		if got := toByte(tc.in); got != tc.want {
			t.Errorf("toByte(%g) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestLatentPreview(t *testing.T) {
	// One latent pixel with channel 0 = 1: RGB = the first row of factors.
	lat := make([]float32, 2*4*1*1)
	lat[4] = 1 // sample 1, channel 0
	img := latentPreview(lat, 1, 4, 1, 1, 3, 0.18215)
	if b := img.Bounds(); b.Dx() != 3 || b.Dy() != 3 {
		t.Fatalf("size %v", b)
	}
	want := [3]uint8{toByte(0.3512), toByte(0.2297), toByte(0.3227)}
	for p := 0; p < len(img.Pix); p += 4 {
		if img.Pix[p] != want[0] || img.Pix[p+1] != want[1] || img.Pix[p+2] != want[2] || img.Pix[p+3] != 255 {
			t.Fatalf("pixel %v, want %v", img.Pix[p:p+4], want)
		}
	}
}

func TestDecodedImagesShape(t *testing.T) {
	if _, err := decodedImages(make([]float32, 12), []int64{1, 4, 1, 3}); err == nil || !strings.Contains(err.Error(), "[batch, 3, height, width]") {
		t.Errorf("4 channels: got %v", err)
	}
	imgs, err := decodedImages([]float32{-1, 1, 0}, []int64{1, 3, 1, 1})
	if err != nil || len(imgs) != 1 {
		t.Fatal(err)
	}
}

func TestResolveModelRefusesPaths(t *testing.T) {
	dirs := &pb.Dirs{Models: t.TempDir()}
	for _, name := range []string{"../etc", "a/b", "/abs", "..", ".", ""} {
		if _, err := resolveModel(dirs, name); err == nil {
			t.Errorf("model %q was accepted", name)
		}
	}
	if _, err := resolveModel(dirs, "absent"); err == nil || !strings.Contains(err.Error(), "not found in the models folder") {
		t.Errorf("absent model: %v", err)
	}
}

func TestPreviewScale(t *testing.T) {
	for _, tc := range []struct{ h, w, want int }{{4, 4, 8}, {64, 64, 4}, {128, 96, 2}, {512, 512, 1}} {
		if got := previewScale(tc.h, tc.w); got != tc.want {
			t.Errorf("previewScale(%d, %d) = %d, want %d", tc.h, tc.w, got, tc.want)
		}
	}
}

// A space-to-depth latent previews its first three channels with the latent
// scale undone: a latent value of latentScale is full intensity.
func TestLatentPreviewUndoesScale(t *testing.T) {
	lat := make([]float32, 48)
	for i := range lat {
		lat[i] = 1.81
	}
	img := latentPreview(lat, 0, 48, 1, 1, 1, 1.81)
	if got := img.Pix[:3]; got[0] != 255 || got[1] != 255 || got[2] != 255 {
		t.Fatalf("pixel %v, want white", got)
	}
}
