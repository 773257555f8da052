package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// WriteOption configures Write and Encode.
type WriteOption func(*writeConfig)

type writeConfig struct {
	metadata map[string]string
}

// WithMetadata stores m as the header's __metadata__ entry (for provenance:
// source, licence, training run).
func WithMetadata(m map[string]string) WriteOption {
	return func(c *writeConfig) { c.metadata = m }
}

// Write stores tensors at path in safetensors format, sorted by name so that
// the same tensors always give the same bytes. It writes to a temporary file
// in the same folder and renames it, so a crash never leaves a half-written
// weights file under the final name.
func Write(path string, tensors map[string]Tensor, opts ...WriteOption) (err error) {
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
	if err = Encode(w, tensors, opts...); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err = w.Flush(); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}

// Encode writes tensors in safetensors format to w (see Write).
func Encode(w io.Writer, tensors map[string]Tensor, opts ...WriteOption) error {
	var cfg writeConfig
	for _, o := range opts {
		o(&cfg)
	}
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if n == "__metadata__" {
			return fmt.Errorf("tensor name %q is reserved for metadata", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)

	hs := make([]Header, len(names))
	for i, n := range names {
		t := tensors[n]
		if t.DType.Size() == 0 {
			return fmt.Errorf("tensor %q has unsupported dtype %q", n, t.DType)
		}
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("tensor %q has negative dimension in shape %v", n, t.Shape)
			}
		}
		if want := t.NumElements() * t.DType.Size(); want != len(t.Data) {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, Data has %d", n, t.Shape, t.DType, want, len(t.Data))
		}
		hs[i] = Header{Name: n, DType: t.DType, Shape: t.Shape}
	}
	hdr, err := encodeHeader(cfg.metadata, hs)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := w.Write(tensors[n].Data); err != nil {
			return err
		}
	}
	return nil
}

// encodeHeader builds a file's prefix: the header's length (8 bytes, little
// endian) and the JSON header itself. It is built by hand so that key order
// is the order of hs, the data order, which keeps files diffable and lets
// readers stream tensors sequentially; and it is padded with spaces so the
// data starts 8-byte aligned, which lets readers that map the file view the
// data as typed arrays without copying.
func encodeHeader(metadata map[string]string, hs []Header) ([]byte, error) {
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		mb, err := json.Marshal(metadata)
		if err != nil {
			return nil, err
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(mb)
	}
	var offset uint64
	for i, h := range hs {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		key, _ := json.Marshal(h.Name)
		shape := h.Shape
		if shape == nil {
			shape = []int{} // a scalar must be written as [], never null
		}
		sb, _ := json.Marshal(shape)
		end := offset + uint64(Tensor{DType: h.DType, Shape: h.Shape}.NumElements()*h.DType.Size())
		fmt.Fprintf(&hdr, `%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, key, h.DType, sb, offset, end)
		offset = end
	}
	hdr.WriteByte('}')
	for (8+hdr.Len())%8 != 0 {
		hdr.WriteByte(' ')
	}
	out := make([]byte, 8, 8+hdr.Len())
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	return append(out, hdr.Bytes()...), nil
}
