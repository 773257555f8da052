package faceapi

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Weights maps a TF.js tensor name (e.g. "conv32_down/conv/filters") to its
// dequantised values.
type Weights map[string]*Tensor

// manifestGroup is one entry of a TF.js "*-weights_manifest.json": the
// tensors it lists are stored back to back in the concatenation of its
// shard files.
type manifestGroup struct {
	Paths   []string `json:"paths"`
	Weights []struct {
		Name         string `json:"name"`
		Shape        []int  `json:"shape"`
		Dtype        string `json:"dtype"`
		Quantization *struct {
			Dtype string  `json:"dtype"`
			Scale float64 `json:"scale"`
			Min   float64 `json:"min"`
		} `json:"quantization"`
	} `json:"weights"`
}

// ReadWeights reads the TF.js model called model (e.g. "face_recognition_model")
// from dir: dir/model-weights_manifest.json and the .bin shards it names.
// Quantised tensors are dequantised as TF.js does (value = min + scale*q);
// int32 tensors are converted to float32.
func ReadWeights(dir, model string) (Weights, error) {
	manifestPath := filepath.Join(dir, model+"-weights_manifest.json")
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, fmt.Errorf("faceapi: reading weights manifest: %w (is the face-api model folder unpacked? run scripts/setup.sh)", err)
	}
	var groups []manifestGroup
	if err := json.Unmarshal(raw, &groups); err != nil {
		return nil, fmt.Errorf("faceapi: %s is not a TF.js weights manifest: %w", manifestPath, err)
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("faceapi: %s lists no weight groups", manifestPath)
	}
	w := Weights{}
	for _, g := range groups {
		var buf []byte
		for _, p := range g.Paths {
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				return nil, fmt.Errorf("faceapi: reading weights shard named in %s: %w", manifestPath, err)
			}
			buf = append(buf, b...)
		}
		off := 0
		for _, e := range g.Weights {
			n := 1
			for _, d := range e.Shape {
				if d < 0 {
					return nil, fmt.Errorf("faceapi: %s: tensor %q has negative dimension in shape %v", manifestPath, e.Name, e.Shape)
				}
				// Every element takes at least a byte, so this bounds n
				// without overflow.
				if d > 0 && n > len(buf)/d {
					return nil, fmt.Errorf("faceapi: %s: tensor %q of shape %v is larger than its shards %v (%d bytes)", manifestPath, e.Name, e.Shape, g.Paths, len(buf))
				}
				n *= d
			}
			storage, width := e.Dtype, 4
			if e.Quantization != nil {
				storage = e.Quantization.Dtype
				switch storage {
				case "uint8":
					width = 1
				case "uint16":
					width = 2
				default:
					return nil, fmt.Errorf("faceapi: %s: tensor %q uses quantisation %q; only uint8 and uint16 are supported", manifestPath, e.Name, storage)
				}
			} else if e.Dtype != "float32" && e.Dtype != "int32" {
				return nil, fmt.Errorf("faceapi: %s: tensor %q has dtype %q; only float32 and int32 are supported", manifestPath, e.Name, e.Dtype)
			}
			end := off + n*width
			if end > len(buf) {
				return nil, fmt.Errorf("faceapi: %s: tensor %q needs bytes [%d, %d) but the shards %v hold only %d bytes (truncated or mismatched .bin?)", manifestPath, e.Name, off, end, g.Paths, len(buf))
			}
			data := make([]float32, n)
			b := buf[off:end]
			switch {
			case e.Quantization != nil:
				// Computed in float64 and rounded once, as TF.js does in JavaScript
				// numbers before storing into a Float32Array.
				s, m := e.Quantization.Scale, e.Quantization.Min
				for i := range data {
					q := float64(b[i])
					if width == 2 {
						q = float64(binary.LittleEndian.Uint16(b[2*i:]))
					}
					data[i] = float32(m + s*q)
				}
			case e.Dtype == "int32":
				for i := range data {
					data[i] = float32(int32(binary.LittleEndian.Uint32(b[4*i:])))
				}
			default:
				for i := range data {
					data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
				}
			}
			if _, dup := w[e.Name]; dup {
				return nil, fmt.Errorf("faceapi: %s lists tensor %q twice", manifestPath, e.Name)
			}
			w[e.Name] = &Tensor{Shape: append([]int(nil), e.Shape...), Data: data}
			off = end
		}
		if off != len(buf) {
			return nil, fmt.Errorf("faceapi: %s: shards %v hold %d bytes but the manifest describes %d (mismatched .bin?)", manifestPath, g.Paths, len(buf), off)
		}
	}
	return w, nil
}

// get returns the tensor called name with the given shape. A -1 in shape
// matches any size.
func (w Weights) get(name string, shape ...int) (*Tensor, error) {
	t, ok := w[name]
	if !ok {
		return nil, fmt.Errorf("faceapi: weights lack tensor %q (wrong model file?)", name)
	}
	if len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("faceapi: tensor %q has shape %v, want rank %d", name, t.Shape, len(shape))
	}
	for i, d := range shape {
		if d >= 0 && t.Shape[i] != d {
			return nil, fmt.Errorf("faceapi: tensor %q has shape %v, want %v", name, t.Shape, shape)
		}
	}
	return t, nil
}

// Tensor is a dense float32 array in row-major order. Images and activations
// are NHWC with the batch dimension dropped: Shape is [height, width,
// channels], as in TF.js.
type Tensor struct {
	Shape []int
	Data  []float32
}
