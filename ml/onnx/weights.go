package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/x448/float16"

	"github.com/face0/face0/ml/onnx/onnxpb"
)

// ReadFloats reads every floating-point initializer of the model at path,
// inline or in external-data side files, and calls fn with its name, shape
// and values as float32 (float16 converted exactly), one tensor at a time:
// side-file tensors are read with ReadAt as they come, so a 3.4 GB UNet is
// never held twice. Integer initializers (shapes, indices) are skipped.
// This is how a model folder's weights are read back for training.
func ReadFloats(path string, fn func(name string, shape []int, data []float32) error) error {
	m, err := Read(path)
	if err != nil {
		return err
	}
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, t := range m.GetGraph().GetInitializer() {
		dt := DType(t.DataType)
		if dt != Float && dt != Float16 {
			continue
		}
		shape := make([]int, len(t.Dims))
		n := 1
		for i, d := range t.Dims {
			shape[i] = int(d)
			n *= int(d)
		}
		raw, err := initializerBytes(path, t, files)
		if err != nil {
			return err
		}
		var vals []float32
		switch {
		case raw != nil && dt == Float && len(raw) == 4*n:
			vals = make([]float32, n)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		case raw != nil && dt == Float16 && len(raw) == 2*n:
			vals = make([]float32, n)
			for i := range vals {
				vals[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
			}
		case raw == nil && dt == Float && len(t.FloatData) == n:
			vals = t.FloatData
		default:
			return fmt.Errorf("onnx: %s: initializer %q of shape %v (%s) has %d data bytes", path, t.Name, shape, dt, len(raw))
		}
		if err := fn(t.Name, shape, vals); err != nil {
			return err
		}
	}
	return nil
}

// initializerBytes returns t's raw bytes: inline, or read from its side
// file (location, offset, length), which must lie beside the model.
func initializerBytes(path string, t *onnxpb.TensorProto, files map[string]*os.File) ([]byte, error) {
	if t.DataLocation != onnxpb.TensorProto_EXTERNAL {
		return t.RawData, nil
	}
	var loc string
	var off, length int64 = 0, -1
	for _, kv := range t.ExternalData {
		switch kv.Key {
		case "location":
			loc = kv.Value
		case "offset":
			off, _ = strconv.ParseInt(kv.Value, 10, 64)
		case "length":
			length, _ = strconv.ParseInt(kv.Value, 10, 64)
		}
	}
	if loc == "" || filepath.Base(loc) != loc || length < 0 || off < 0 {
		return nil, fmt.Errorf("onnx: %s: initializer %q has bad external data (location %q, offset %d, length %d)", path, t.Name, loc, off, length)
	}
	f, ok := files[loc]
	if !ok {
		var err error
		if f, err = os.Open(filepath.Join(filepath.Dir(path), loc)); err != nil {
			return nil, fmt.Errorf("onnx: %s: external data of %q: %w", path, t.Name, err)
		}
		files[loc] = f
	}
	b := make([]byte, length)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("onnx: %s: read %q from %s at %d: %w (is the side file truncated?)", path, t.Name, loc, off, err)
	}
	return b, nil
}
