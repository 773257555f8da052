package faceapi

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeModel writes a TF.js manifest and one shard into a new folder.
func writeModel(t *testing.T, manifest string, bin []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m-weights_manifest.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if bin != nil {
		if err := os.WriteFile(filepath.Join(dir, "m.bin"), bin, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadWeightsDecodes(t *testing.T) {
	var bin []byte
	bin = binary.LittleEndian.AppendUint32(bin, math.Float32bits(1.5))
	bin = binary.LittleEndian.AppendUint32(bin, math.Float32bits(-2))
	bin = append(bin, 0, 2, 255)                            // uint8-quantised
	bin = binary.LittleEndian.AppendUint16(bin, 1000)       // uint16-quantised
	bin = binary.LittleEndian.AppendUint32(bin, 0xfffffffe) // int32 -2
	dir := writeModel(t, `[{"paths": ["m.bin"], "weights": [
		{"name": "f", "shape": [2], "dtype": "float32"},
		{"name": "q8", "shape": [1, 3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1}},
		{"name": "q16", "shape": [], "dtype": "float32", "quantization": {"dtype": "uint16", "scale": 0.001, "min": 0}},
		{"name": "i", "shape": [1], "dtype": "int32"}]}]`, bin)
	w, err := ReadWeights(dir, "m")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]float32{
		"f":   {1.5, -2},
		"q8":  {-1, 0, 126.5},
		"q16": {1},
		"i":   {-2},
	} {
		got := w[name]
		if got == nil || len(got.Data) != len(want) {
			t.Fatalf("%s = %+v, want %v", name, got, want)
		}
		for i := range want {
			if math.Abs(float64(got.Data[i]-want[i])) > 1e-6 {
				t.Errorf("%s[%d] = %v, want %v", name, i, got.Data[i], want[i])
			}
		}
	}
	if s := w["q8"].Shape; len(s) != 2 || s[0] != 1 || s[1] != 3 {
		t.Errorf("q8 shape %v, want [1 3]", s)
	}
}

func TestReadWeightsErrors(t *testing.T) {
	four := []byte{0, 0, 0, 0}
	for _, tc := range []struct {
		name, manifest string
		bin            []byte
		want           string // in the error
	}{
		{"not json", `{`, four, "not a TF.js weights manifest"},
		{"empty", `[]`, four, "no weight groups"},
		{"missing shard", `[{"paths": ["other.bin"], "weights": []}]`, four, "other.bin"},
		{"truncated", `[{"paths": ["m.bin"], "weights": [{"name": "a/b", "shape": [2], "dtype": "float32"}]}]`, four, `"a/b" needs bytes [0, 8)`},
		{"extra bytes", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "float32"}]}]`, append(four, 1), "hold 5 bytes but the manifest describes 4"},
		{"dtype", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "float16"}]}]`, four, `"a" has dtype "float16"`},
		{"quantisation", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "float32", "quantization": {"dtype": "float16"}}]}]`, four, `"a" uses quantisation "float16"`},
		{"negative", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [-1], "dtype": "float32"}]}]`, four, "negative dimension"},
		{"huge", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [4294967296, 4294967296, 4294967296], "dtype": "float32"}]}]`, four, "larger than its shards"},
		{"duplicate", `[{"paths": ["m.bin"], "weights": [{"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1, "min": 0}}, {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1, "min": 0}}]}]`, four, `tensor "a" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadWeights(writeModel(t, tc.manifest, tc.bin), "m")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	_, err := ReadWeights(t.TempDir(), "face_recognition_model")
	if err == nil || !strings.Contains(err.Error(), "face_recognition_model-weights_manifest.json") || !strings.Contains(err.Error(), "setup.sh") {
		t.Errorf("missing manifest: error = %v, want it to name the file and scripts/setup.sh", err)
	}
}

// TestNetsRejectWrongWeights builds each net from weights with one tensor
// missing, one tensor misshapen, and from another model's weights.
func TestNetsRejectWrongWeights(t *testing.T) {
	dir := modelDir(t)
	builders := []struct {
		model  string
		build  func(Weights) error
		tensor string // one tensor the net needs
	}{
		{"face_recognition_model", func(w Weights) error { _, err := NewRecognizer(w); return err }, "conv128_1/conv2/scale/weights"},
		{"tiny_face_detector_model", func(w Weights) error { _, err := NewTinyFaceDetector(w); return err }, "conv3/depthwise_filter"},
		{"ssd_mobilenetv1_model", func(w Weights) error { _, err := NewSSDMobileNetV1(w); return err }, "MobilenetV1/Conv2d_7_depthwise/BatchNorm/moving_variance"},
	}
	for i, b := range builders {
		t.Run(b.model, func(t *testing.T) {
			w, err := ReadWeights(dir, b.model)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.build(w); err != nil {
				t.Fatalf("intact weights: %v", err)
			}
			orig := w[b.tensor]

			delete(w, b.tensor)
			if err := b.build(w); err == nil || !strings.Contains(err.Error(), b.tensor) {
				t.Errorf("without %s: error = %v, want one naming it", b.tensor, err)
			}

			w[b.tensor] = &Tensor{Shape: append(append([]int(nil), orig.Shape...), 1), Data: orig.Data}
			if err := b.build(w); err == nil || !strings.Contains(err.Error(), b.tensor) {
				t.Errorf("with %s misshapen: error = %v, want one naming it", b.tensor, err)
			}

			other, err := ReadWeights(dir, builders[(i+1)%len(builders)].model)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.build(other); err == nil {
				t.Errorf("built from %s weights, want an error", builders[(i+1)%len(builders)].model)
			}
		})
	}
	if _, err := LoadRecognizer(t.TempDir()); err == nil {
		t.Error("LoadRecognizer(empty folder) succeeded")
	}
}
