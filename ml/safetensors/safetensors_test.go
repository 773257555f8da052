package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/face0/face0/internal/testenv"
)

// raw assembles a file from a header string and a body, so malformed headers
// can be written literally.
func raw(header string, body []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(body))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, body...)
}

func TestRoundTrip(t *testing.T) {
	half := Tensor{DType: F16, Shape: []int{3}, Data: []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00}} // 1, -2, 2^-24
	bf := Tensor{DType: BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x40, 0xc0}}              // 1, -3
	ints := Tensor{DType: I64, Shape: []int{2}, Data: make([]byte, 16)}
	binary.LittleEndian.PutUint64(ints.Data[8:], 42)
	in := map[string]Tensor{
		"b.weight": FromFloat32([]int{2, 3}, []float32{1, 2, 3, 4, 5, -6}),
		"a.half":   half,
		"a.bf16":   bf,
		"c.ids":    ints,
		"d.scalar": FromFloat32(nil, []float32{7}),
		"e.empty":  FromFloat32([]int{0, 4}, nil),
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, in, WithMetadata(map[string]string{"source": "test"})); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if hl := binary.LittleEndian.Uint64(raw); (8+hl)%8 != 0 {
		t.Errorf("data starts at %d, want 8-byte alignment", 8+hl)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), []string{"a.bf16", "a.half", "b.weight", "c.ids", "d.scalar", "e.empty"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	if f.Metadata()["source"] != "test" {
		t.Errorf("metadata = %v", f.Metadata())
	}
	for name, want := range in {
		got, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || !bytes.Equal(got.Data, want.Data) || got.NumElements() != want.NumElements() {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	tests := []struct {
		name  string
		want  []float32
		shape []int
	}{
		{"b.weight", []float32{1, 2, 3, 4, 5, -6}, []int{2, 3}},
		{"a.half", []float32{1, -2, float32(math.Ldexp(1, -24))}, []int{3}},
		{"a.bf16", []float32{1, -3}, []int{2}},
		{"d.scalar", []float32{7}, []int{}},
	}
	for _, tc := range tests {
		v, shape, err := f.Float32(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(v, tc.want) || !reflect.DeepEqual(shape, tc.shape) {
			t.Errorf("Float32(%s) = %v %v, want %v %v", tc.name, v, shape, tc.want, tc.shape)
		}
	}
	if _, _, err := f.Float32("c.ids"); err == nil || !strings.Contains(err.Error(), "c.ids") {
		t.Errorf("Float32 of an I64 tensor: err = %v, want one naming the tensor", err)
	}
	if _, err := f.Tensor("b.bias"); err == nil || !strings.Contains(err.Error(), "b.weight") {
		t.Errorf("missing tensor: err = %v, want a hint naming b.weight", err)
	}
}

func TestHalfToFloat32(t *testing.T) {
	tests := []struct {
		h    uint16
		want float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0400, float32(math.Ldexp(1, -14))},
		{0x03ff, float32(math.Ldexp(1023, -24))}, {0x7c00, float32(math.Inf(1))}, {0xfc00, float32(math.Inf(-1))},
	}
	for _, tc := range tests {
		if got := HalfToFloat32(tc.h); got != tc.want {
			t.Errorf("HalfToFloat32(%#04x) = %v, want %v", tc.h, got, tc.want)
		}
	}
	if v := HalfToFloat32(0x7e00); v == v {
		t.Errorf("HalfToFloat32(NaN) = %v, want NaN", v)
	}
}

func TestMalformed(t *testing.T) {
	body8 := make([]byte, 8)
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 1<<40)
	tests := []struct {
		name string
		data []byte
		want string // substring of the error
	}{
		{"empty", nil, "too short"},
		{"huge header length", hugeLen, "exceeds"},
		{"header past end", append([]byte{200, 0, 0, 0, 0, 0, 0, 0}, "{}"...), "truncated"},
		{"not json", raw("hello", nil), "JSON object"},
		{"json array", raw("[1]", nil), "JSON object"},
		{"bad dtype", raw(`{"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}`, body8), `"x" has unsupported dtype`},
		{"missing field", raw(`{"x":{"dtype":"F32","shape":[2]}}`, body8), "needs dtype, shape and data_offsets"},
		{"unknown field", raw(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"foo":1}}`, body8), `"x"`},
		{"offsets out of range", raw(`{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, body8), "outside the 8 data bytes"},
		{"offsets reversed", raw(`{"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, body8), "outside"},
		{"size mismatch", raw(`{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, body8), "needs 12 bytes"},
		{"negative dim", raw(`{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, body8), "negative"},
		{"huge shape", raw(`{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, body8), "far larger"},
		{"overlap", raw(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "overlap"},
		{"hole", raw(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "hole"},
		{"trailing data", raw(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, body8), "cover 4 data bytes"},
		{"duplicate", raw(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "twice"},
		{"bad metadata", raw(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"junk after json", raw(`{} {}`, nil), "trailing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.safetensors", tc.data)
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.safetensors") {
				t.Errorf("error %q should contain %q and the file name", err, tc.want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]Tensor
	}{
		{"reserved", map[string]Tensor{"__metadata__": FromFloat32([]int{1}, []float32{1})}},
		{"size", map[string]Tensor{"x": {DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}},
		{"dtype", map[string]Tensor{"x": {DType: "F7", Shape: []int{1}, Data: make([]byte, 4)}}},
	}
	for _, tc := range tests {
		if err := Encode(&bytes.Buffer{}, tc.in); err == nil {
			t.Errorf("%s: Encode succeeded, want error", tc.name)
		}
	}
	if err := Write(filepath.Join(t.TempDir(), "missing-dir", "x.safetensors"), nil); err == nil {
		t.Error("Write into a missing folder succeeded")
	}
}

// TestMTCNNWeights reads the project's real weights file as a cross-check of
// the layout the shared README documents.
func TestMTCNNWeights(t *testing.T) {
	path := testenv.Shared(t, "mtcnn", "mtcnn.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Names()); n != 50 {
		t.Errorf("%d tensors, want 50", n)
	}
	total := 0
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		if tt.DType != F32 {
			t.Errorf("%s: dtype %s", n, tt.DType)
		}
		total += tt.NumElements()
	}
	if total != 495850 {
		t.Errorf("%d parameters, want 495850", total)
	}
	v, shape, err := f.Float32("onet.dense5.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shape, []int{256, 1152}) || len(v) != 256*1152 {
		t.Errorf("onet.dense5.weight shape %v", shape)
	}
}
