package safetensors

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/x448/float16"
)

// Reader reads a safetensors file tensor by tensor. Open reads a whole file
// into memory, which is fine for a model's small parts but not for a
// Stable Diffusion checkpoint of 2 to 8 GB: a Reader holds only the
// validated header and reads each tensor's bytes when asked (ReadAt), so the
// process's memory holds one tensor at a time and the file's pages stay in
// the page cache, outside the process.
//
// A Reader is safe for concurrent use (ReadAt is).
type Reader struct {
	f       *os.File
	path    string
	spans   map[string]span
	names   []string // in data order
	meta    map[string]string
	dataOff int64
}

// OpenReader validates path's header (the same checks as Open, against the
// file's size) and keeps the file open for reading tensors. Close it.
func OpenReader(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := newReader(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func newReader(path string, f *os.File) (*Reader, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: %s", path, fmt.Sprintf(format, args...))
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	var lenbuf [8]byte
	if size < 8 {
		return nil, fail("file is %d bytes, too short for the 8-byte header length; is it a safetensors file?", size)
	}
	if _, err := f.ReadAt(lenbuf[:], 0); err != nil {
		return nil, fail("read header length: %v", err)
	}
	hlen := binary.LittleEndian.Uint64(lenbuf[:])
	if hlen > MaxHeaderSize {
		return nil, fail("header length %d exceeds the %d-byte limit; the file is corrupt or not safetensors", hlen, MaxHeaderSize)
	}
	if hlen > uint64(size-8) {
		return nil, fail("header length %d runs past the end of the %d-byte file; the file is truncated", hlen, size)
	}
	header := make([]byte, hlen)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, fail("read header: %v", err)
	}
	idx, err := index(path, header, uint64(size)-8-hlen)
	if err != nil {
		return nil, err
	}
	r := &Reader{f: f, path: path, spans: make(map[string]span, len(idx.spans)), meta: idx.meta, dataOff: int64(8 + hlen)}
	for _, s := range idx.spans {
		r.spans[s.name] = s
		r.names = append(r.names, s.name)
	}
	return r, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Path is the file's path.
func (r *Reader) Path() string { return r.path }

// Names lists the tensors in the order their data appears in the file.
func (r *Reader) Names() []string { return slices.Clone(r.names) }

// Metadata returns the optional __metadata__ string map (nil when absent).
func (r *Reader) Metadata() map[string]string { return r.meta }

// Info is a tensor's element type and shape, read from the header alone.
type Info struct {
	DType DType
	Shape []int
}

// Info returns the named tensor's type and shape without reading its data.
func (r *Reader) Info(name string) (Info, bool) {
	s, ok := r.spans[name]
	if !ok {
		return Info{}, false
	}
	return Info{DType: s.dtype, Shape: slices.Clone(s.shape)}, true
}

// Tensor reads the named tensor's bytes.
func (r *Reader) Tensor(name string) (Tensor, error) {
	s, ok := r.spans[name]
	if !ok {
		return Tensor{}, fmt.Errorf("safetensors: %s: no tensor %q (the file has %d tensors)", r.path, name, len(r.names))
	}
	data := make([]byte, s.end-s.begin)
	if _, err := r.f.ReadAt(data, r.dataOff+int64(s.begin)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: %s: read tensor %q: %w", r.path, name, err)
	}
	return Tensor{DType: s.dtype, Shape: slices.Clone(s.shape), Data: data}, nil
}

// Float32 reads the named tensor and converts it to float32 (from F32, F64,
// F16 or BF16).
func (r *Reader) Float32(name string) ([]float32, []int, error) {
	t, err := r.Tensor(name)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float32()
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q: %w", r.path, name, err)
	}
	return v, t.Shape, nil
}

// FromFloat16 builds an F16 tensor from float32 values, rounding each to
// the nearest binary16 (ties to even; beyond ±65504 gives ±Inf). It panics
// when the shape does not match len(v), which is a programming error.
func FromFloat16(shape []int, v []float32) Tensor {
	t := Tensor{DType: F16, Shape: append([]int(nil), shape...)}
	if t.NumElements() != len(v) {
		panic(fmt.Sprintf("safetensors.FromFloat16: shape %v holds %d values, got %d", shape, t.NumElements(), len(v)))
	}
	t.Data = make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(t.Data[2*i:], float16.Fromfloat32(x).Bits())
	}
	return t
}

// Header describes one tensor of a file written by WriteStream.
type Header struct {
	Name  string
	DType DType
	Shape []int
}

// WriteStream writes a safetensors file whose tensors are produced one at a
// time, in the order of headers, by data(i): the whole file never sits in
// memory (a full-size Stable Diffusion checkpoint is gigabytes). The header
// lists the tensors in that order. Like Write it goes through a temporary
// file and a rename.
func WriteStream(path string, headers []Header, data func(i int) ([]byte, error), opts ...WriteOption) (err error) {
	var cfg writeConfig
	for _, o := range opts {
		o(&cfg)
	}
	seen := map[string]bool{}
	for _, h := range headers {
		if h.DType.Size() == 0 {
			return fmt.Errorf("safetensors: write %s: tensor %q has unsupported dtype %q", path, h.Name, h.DType)
		}
		if seen[h.Name] || h.Name == "__metadata__" {
			return fmt.Errorf("safetensors: write %s: tensor name %q is used twice or reserved", path, h.Name)
		}
		seen[h.Name] = true
	}
	hdr, err := encodeHeader(cfg.metadata, headers)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	_, err = w.Write(hdr)
	for i, h := range headers {
		if err != nil {
			break
		}
		var b []byte
		if b, err = data(i); err != nil {
			break
		}
		if want := (Tensor{DType: h.DType, Shape: h.Shape}).NumElements() * h.DType.Size(); len(b) != want {
			err = fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, got %d", h.Name, h.Shape, h.DType, want, len(b))
			break
		}
		_, err = w.Write(b)
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}

var _ io.Closer = (*Reader)(nil)
