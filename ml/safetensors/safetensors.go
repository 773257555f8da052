// Package safetensors reads and writes the safetensors container format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header mapping tensor names to dtype, shape and byte offsets,
// then the raw little-endian tensor bytes.
//
// The reader validates everything it is given before handing out any tensor,
// because weight files come from outside the project: a truncated download or a
// hand-edited header must fail with a message naming the file and the tensor,
// never with a panic or a silently wrong tensor.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// MaxHeaderSize bounds the JSON header. The upstream format caps it at 100 MB;
// anything larger is certainly a corrupt length field, and refusing it early
// avoids allocating gigabytes for a garbage file.
const MaxHeaderSize = 100 << 20

// DType names an element type exactly as the safetensors header spells it.
type DType string

// The element types of the safetensors format.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U64    DType = "U64"
	U32    DType = "U32"
	U16    DType = "U16"
	U8     DType = "U8"
	Bool   DType = "BOOL"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
)

var dtypeSizes = map[DType]int{
	F64: 8, F32: 4, F16: 2, BF16: 2,
	I64: 8, I32: 4, I16: 2, I8: 1,
	U64: 8, U32: 4, U16: 2, U8: 1,
	Bool: 1, F8E4M3: 1, F8E5M2: 1,
}

// Size returns the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int { return dtypeSizes[d] }

// Tensor is one named array: its element type, its shape (row-major) and its
// raw little-endian bytes. Data returned by File aliases the file's buffer and
// must not be modified.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file held in memory.
type File struct {
	path     string
	tensors  map[string]Tensor
	names    []string // in data order, which is the order writers usually intend
	metadata map[string]string
}

// Open reads and validates the safetensors file at path.
func Open(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data as a safetensors file. name is used only in error
// messages (usually the path it was read from). The returned File keeps
// references into data.
func Parse(name string, data []byte) (*File, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: %s", name, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return nil, fail("file is %d bytes, too short for the 8-byte header length; is it a safetensors file?", len(data))
	}
	hlen := binary.LittleEndian.Uint64(data[:8])
	if hlen > MaxHeaderSize {
		return nil, fail("header length %d exceeds the %d-byte limit; the file is corrupt or not safetensors", hlen, MaxHeaderSize)
	}
	if hlen > uint64(len(data)-8) {
		return nil, fail("header length %d runs past the end of the %d-byte file; the file is truncated", hlen, len(data))
	}
	body := data[8+hlen:]
	idx, err := index(name, data[8:8+hlen], uint64(len(body)))
	if err != nil {
		return nil, err
	}
	f := &File{path: name, tensors: make(map[string]Tensor, len(idx.spans)), metadata: idx.meta}
	for _, s := range idx.spans {
		f.tensors[s.name] = Tensor{DType: s.dtype, Shape: s.shape, Data: body[s.begin:s.end:s.end]}
		f.names = append(f.names, s.name)
	}
	return f, nil
}

// span is one indexed tensor: where its bytes lie in the data section.
type span struct {
	name       string
	dtype      DType
	shape      []int
	begin, end uint64
}

// indexed is a validated header: the tensors in data order and the metadata.
type indexed struct {
	spans []span
	meta  map[string]string
}

// index validates a header against a data section of bodyLen bytes: every
// tensor's dtype, shape and offsets, and that the tensors tile the data
// exactly. Parse and OpenReader share it, so a file read whole and one read
// tensor by tensor are held to the same rules.
func index(name string, header []byte, bodyLen uint64) (*indexed, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: %s", name, fmt.Sprintf(format, args...))
	}
	if h := bytes.TrimSpace(header); len(h) == 0 || h[0] != '{' {
		return nil, fail("header does not start with a JSON object")
	}
	entries, meta, err := decodeHeader(header)
	if err != nil {
		return nil, fail("%v", err)
	}
	spans := make([]span, 0, len(entries))
	for _, e := range entries {
		size := e.DType.Size()
		if size == 0 {
			return nil, fail("tensor %q has unsupported dtype %q", e.name, e.DType)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fail("tensor %q: data_offsets must be [begin, end], got %d numbers", e.name, len(e.DataOffsets))
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin > end || end > bodyLen {
			return nil, fail("tensor %q: data_offsets [%d, %d] are outside the %d data bytes; the file is truncated or corrupt",
				e.name, begin, end, bodyLen)
		}
		n := uint64(1)
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fail("tensor %q has negative dimension in shape %v", e.name, e.Shape)
			}
			// Overflow guard: a product beyond the body length is already an error.
			if d != 0 && n > bodyLen/uint64(d)+1 {
				return nil, fail("tensor %q: shape %v is far larger than the file", e.name, e.Shape)
			}
			n *= uint64(d)
		}
		if want := n * uint64(size); want != end-begin {
			return nil, fail("tensor %q: shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d",
				e.name, e.Shape, e.DType, want, begin, end, end-begin)
		}
		shape := make([]int, len(e.Shape))
		for i, d := range e.Shape {
			shape[i] = int(d)
		}
		spans = append(spans, span{e.name, e.DType, shape, begin, end})
	}

	// The format requires the data to be indexed entirely, without holes or
	// overlaps: overlapping tensors would alias each other when written through,
	// and holes usually mean the header and the data disagree.
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	pos := uint64(0)
	for _, s := range spans {
		if s.begin < pos {
			return nil, fail("tensor %q: data_offsets [%d, %d] overlap the previous tensor, which ends at %d", s.name, s.begin, s.end, pos)
		}
		if s.begin > pos {
			return nil, fail("tensor %q starts at data offset %d but the previous tensor ends at %d: the data has a hole", s.name, s.begin, pos)
		}
		pos = s.end
	}
	if pos != bodyLen {
		return nil, fail("tensors cover %d data bytes but the file holds %d after the header", pos, bodyLen)
	}
	return &indexed{spans: spans, meta: meta}, nil
}

type entry struct {
	name        string
	DType       DType    `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// decodeHeader walks the top-level JSON object by hand so that duplicate
// names are caught (encoding/json silently keeps the last one) and so that
// the file order of tensors is preserved.
func decodeHeader(header []byte) ([]entry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("header is not a JSON object")
	}
	var entries []entry
	var meta map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header JSON: %v", err)
		}
		name := tok.(string) // object keys are always strings
		if seen[name] {
			return nil, nil, fmt.Errorf("tensor %q appears twice in the header", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		e := entry{name: name}
		if err := dec.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: bad header entry: %v", name, err)
		}
		if e.DType == "" || e.Shape == nil || e.DataOffsets == nil {
			return nil, nil, fmt.Errorf("tensor %q: header entry needs dtype, shape and data_offsets", name)
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("header JSON: %v", err)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) != 0 || dec.More() {
		return nil, nil, errors.New("header has trailing data after the JSON object")
	}
	return entries, meta, nil
}

// Path is the name the file was opened or parsed with.
func (f *File) Path() string { return f.path }

// Names lists the tensors in the order their data appears in the file.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Metadata returns the optional __metadata__ string map (nil when absent).
func (f *File) Metadata() map[string]string { return f.metadata }

// Tensor returns the named tensor. Its Data aliases the file buffer.
func (f *File) Tensor(name string) (Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("safetensors: %s: no tensor %q (the file has %d tensors%s)", f.path, name, len(f.names), f.hint(name))
	}
	return t, nil
}

// hint suggests names that share the missing name's prefix, which is the
// usual mistake (a renamed layer or a different network prefix).
func (f *File) hint(name string) string {
	prefix := name
	if i := strings.LastIndex(name, "."); i > 0 {
		prefix = name[:i+1]
	}
	var near []string
	for _, n := range f.names {
		if strings.HasPrefix(n, prefix) {
			near = append(near, n)
		}
	}
	if len(near) == 0 {
		return ""
	}
	if len(near) > 6 {
		near = append(near[:6], "...")
	}
	return "; similar: " + strings.Join(near, ", ")
}

// Float32 decodes the named tensor to float32, converting from F64, F16 or
// BF16 when needed, and returns it with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, err := f.Tensor(name)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float32()
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return v, slices.Clone(t.Shape), nil
}

// Float32 decodes a floating-point tensor to a new []float32.
func (t Tensor) Float32() ([]float32, error) {
	n := t.NumElements()
	out := make([]float32, n)
	b := t.Data
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	case F16:
		for i := range out {
			out[i] = HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	default:
		return nil, fmt.Errorf("dtype %s is not floating point; read Tensor.Data directly", t.DType)
	}
	return out, nil
}

// HalfToFloat32 converts an IEEE 754 binary16 value to float32 exactly.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN: keep the payload
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	case frac == 0:
		return math.Float32frombits(sign)
	default: // subnormal half: value = frac * 2^-24, exact in float32
		v := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}

// FromFloat32 builds a float32 tensor from values in row-major order. It panics when
// the shape does not match len(v), which is a programming error.
func FromFloat32(shape []int, v []float32) Tensor {
	t := Tensor{DType: F32, Shape: append([]int(nil), shape...)}
	if t.NumElements() != len(v) {
		panic(fmt.Sprintf("safetensors.FromFloat32: shape %v holds %d values, got %d", shape, t.NumElements(), len(v)))
	}
	t.Data = make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(x))
	}
	return t
}
