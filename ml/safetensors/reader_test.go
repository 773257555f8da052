package safetensors

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestReaderMatchesOpen reads the same file whole and tensor by tensor.
func TestReaderMatchesOpen(t *testing.T) {
	in := map[string]Tensor{
		"w":     FromFloat32([]int{2, 3}, []float32{1, 2, 3, 4, 5, -6}),
		"h":     FromFloat16([]int{3}, []float32{1, -2, 65504}),
		"empty": FromFloat32([]int{0}, nil),
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, in, WithMetadata(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !reflect.DeepEqual(r.Names(), f.Names()) || r.Metadata()["k"] != "v" {
		t.Fatalf("names %v vs %v, metadata %v", r.Names(), f.Names(), r.Metadata())
	}
	for _, n := range f.Names() {
		want, _ := f.Tensor(n)
		got, err := r.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: reader gives %v %v, Open gives %v %v", n, got.DType, got.Shape, want.DType, want.Shape)
		}
		info, ok := r.Info(n)
		if !ok || info.DType != want.DType || !reflect.DeepEqual(info.Shape, want.Shape) {
			t.Errorf("%s: info %+v", n, info)
		}
	}
	v, shape, err := r.Float32("h")
	if err != nil || !reflect.DeepEqual(v, []float32{1, -2, 65504}) || !reflect.DeepEqual(shape, []int{3}) {
		t.Errorf("h = %v %v %v", v, shape, err)
	}
	if _, err := r.Tensor("nope"); err == nil || !strings.Contains(err.Error(), `no tensor "nope"`) {
		t.Errorf("missing tensor: %v", err)
	}
}

// TestReaderRejectsTruncated: a file cut short is refused from its header,
// before any tensor is read.
func TestReaderRejectsTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, map[string]Tensor{"w": FromFloat32([]int{64}, make([]float32, 64))}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReader(path); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated file: %v", err)
	}
	if err := os.WriteFile(path, []byte("PK\x03\x04 not safetensors"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReader(path); err == nil || !strings.Contains(err.Error(), "header") {
		t.Fatalf("zip file: %v", err)
	}
}

// TestWriteStream: tensors produced one at a time give the same file
// content a reader sees, in the given order.
func TestWriteStream(t *testing.T) {
	hs := []Header{{"b", F32, []int{2}}, {"a", F16, []int{2, 2}}, {"s", F32, nil}}
	vals := [][]float32{{1, 2}, {0.5, -1, 3, 4}, {9}}
	path := filepath.Join(t.TempDir(), "s.safetensors")
	err := WriteStream(path, hs, func(i int) ([]byte, error) {
		if hs[i].DType == F16 {
			return FromFloat16(hs[i].Shape, vals[i]).Data, nil
		}
		return FromFloat32(hs[i].Shape, vals[i]).Data, nil
	}, WithMetadata(map[string]string{"format": "pt"}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Names(); !reflect.DeepEqual(got, []string{"b", "a", "s"}) {
		t.Fatalf("names %v", got)
	}
	for i, h := range hs {
		v, _, err := r.Float32(h.Name)
		if err != nil || !reflect.DeepEqual(v, vals[i]) {
			t.Errorf("%s = %v %v", h.Name, v, err)
		}
	}
	// A producer that gives the wrong length fails and leaves no file.
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	err = WriteStream(bad, hs, func(int) ([]byte, error) { return []byte{1}, nil })
	if err == nil || !strings.Contains(err.Error(), `tensor "b"`) {
		t.Fatalf("short data: %v", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a failed write left %s", bad)
	}
}
