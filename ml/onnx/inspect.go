package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/ml/onnx/onnxpb"
)

// Dim is one axis of a declared tensor shape: a fixed Size, or a named
// dynamic axis (Size -1, Name "batch"), or unknown (Size -1, Name "").
type Dim struct {
	Size int64
	Name string
}

func (d Dim) String() string {
	switch {
	case d.Size >= 0:
		return strconv.FormatInt(d.Size, 10)
	case d.Name != "":
		return d.Name
	}
	return "?"
}

// TensorInfo is a graph input or output as the model declares it.
type TensorInfo struct {
	Name  string
	DType DType
	// Dims is nil when the model declares no shape (rank unknown).
	Dims []Dim
}

// Rank is the declared rank, or -1 when the shape is undeclared.
func (t TensorInfo) Rank() int {
	if t.Dims == nil {
		return -1
	}
	return len(t.Dims)
}

// Shape is the declared shape with -1 for dynamic axes.
func (t TensorInfo) Shape() []int64 {
	out := make([]int64, len(t.Dims))
	for i, d := range t.Dims {
		out[i] = d.Size
	}
	return out
}

func (t TensorInfo) String() string {
	if t.Dims == nil {
		return fmt.Sprintf("%s %s[?]", t.Name, t.DType)
	}
	parts := make([]string, len(t.Dims))
	for i, d := range t.Dims {
		parts[i] = d.String()
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, t.DType, strings.Join(parts, ","))
}

// ModelInfo is what Inspect reads from a model file.
type ModelInfo struct {
	Path      string
	IRVersion int64
	Opset     int64 // version of the default ("ai.onnx") domain
	GraphName string
	// Inputs are the inputs a caller must feed: graph inputs that also have an
	// initializer (old exporters list weights as inputs) are left out, as
	// onnxruntime leaves them out of a session's inputs.
	Inputs  []TensorInfo
	Outputs []TensorInfo
	// Initializers counts the weights; ExternalFiles lists the side files
	// they reference (relative to the model's folder) and ExternalBytes their
	// total referenced length.
	Initializers  int
	ExternalFiles []string
	ExternalBytes int64
	// FileBytes is the size of the .onnx file itself.
	FileBytes int64
}

// Input returns the named input.
func (m *ModelInfo) Input(name string) (TensorInfo, bool) { return find(m.Inputs, name) }

// Output returns the named output.
func (m *ModelInfo) Output(name string) (TensorInfo, bool) { return find(m.Outputs, name) }

func find(ts []TensorInfo, name string) (TensorInfo, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// Inspect reads a model's interface (inputs, outputs, opset) and checks that
// its external data files exist and are long enough, without reading the
// weights: it walks the protobuf wire format and seeks over initializer
// payloads, so a multi-gigabyte model costs a few hundred small reads.
// onnxruntime's own GetInputOutputInfo builds a throwaway session, which
// loads and optimises every weight.
//
// Errors name the file and say what is wrong (truncated, not ONNX, missing
// side file).
func Inspect(path string) (*ModelInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("onnx: %s is a folder, not a .onnx file", path)
	}
	s := &wireScanner{r: f, path: path}
	info := &ModelInfo{Path: path, FileBytes: st.Size()}
	graphs := 0
	err = s.fields(0, st.Size(), func(fl field) error {
		switch {
		case fl.num == 1 && fl.typ == protowire.VarintType:
			info.IRVersion = int64(fl.v)
		case fl.num == 8 && fl.typ == protowire.BytesType:
			var op onnxpb.OperatorSetIdProto
			if err := s.decode(fl, &op); err != nil {
				return err
			}
			if op.Domain == "" || op.Domain == "ai.onnx" {
				info.Opset = op.Version
			}
		case fl.num == 7 && fl.typ == protowire.BytesType:
			graphs++
			return s.graph(fl, info)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graphs == 0 || info.IRVersion <= 0 {
		return nil, fmt.Errorf("onnx: %s: not an ONNX model (no graph or IR version found; is it a .onnx file?)", path)
	}
	if len(info.Outputs) == 0 {
		return nil, fmt.Errorf("onnx: %s: the graph declares no outputs; the file is corrupt or not a model", path)
	}
	if err := checkExternal(path, info); err != nil {
		return nil, err
	}
	return info, nil
}

type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint value
	off int64  // payload start (bytes type)
	n   int64  // payload length (bytes type)
	at  int64  // offset of the tag, for messages
}

// wireScanner walks protobuf fields through ReadAt, so payloads it does not
// need are never read.
type wireScanner struct {
	r    io.ReaderAt
	path string
	buf  [2 * binary64]byte
}

const binary64 = 10 // max varint length

func (s *wireScanner) corrupt(at int64, format string, args ...any) error {
	return fmt.Errorf("onnx: %s: not a valid ONNX model: "+format+" at byte %d (the file is truncated or corrupt)", append([]any{s.path}, append(args, at)...)...)
}

// fields calls fn for each field of the message occupying [off, end).
func (s *wireScanner) fields(off, end int64, fn func(field) error) error {
	for off < end {
		n, err := s.r.ReadAt(s.buf[:], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("onnx: %s: read: %w", s.path, err)
		}
		b := s.buf[:n]
		if int64(len(b)) > end-off {
			b = b[:end-off]
		}
		num, typ, tl := protowire.ConsumeTag(b)
		if tl < 0 || num == 0 {
			return s.corrupt(off, "bad field tag")
		}
		fl := field{num: num, typ: typ, at: off}
		switch typ {
		case protowire.VarintType:
			v, vl := protowire.ConsumeVarint(b[tl:])
			if vl < 0 {
				return s.corrupt(off, "bad varint in field %d", num)
			}
			fl.v = v
			off += int64(tl + vl)
		case protowire.Fixed32Type:
			off += int64(tl) + 4
		case protowire.Fixed64Type:
			off += int64(tl) + 8
		case protowire.BytesType:
			l, ll := protowire.ConsumeVarint(b[tl:])
			if ll < 0 {
				return s.corrupt(off, "bad length in field %d", num)
			}
			fl.off = off + int64(tl+ll)
			fl.n = int64(l)
			if l > uint64(end-fl.off) {
				return s.corrupt(off, "field %d claims %d bytes but only %d remain", num, l, end-fl.off)
			}
			off = fl.off + fl.n
		default:
			return s.corrupt(off, "unsupported wire type %d in field %d", typ, num)
		}
		if off > end {
			return s.corrupt(fl.at, "field %d runs past its message", num)
		}
		if err := fn(fl); err != nil {
			return err
		}
	}
	return nil
}

// decode reads a (small) length-delimited field and unmarshals it.
func (s *wireScanner) decode(fl field, m proto.Message) error {
	b, err := s.read(fl)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return s.corrupt(fl.at, "cannot decode field %d (%v)", fl.num, err)
	}
	return nil
}

func (s *wireScanner) read(fl field) ([]byte, error) {
	b := make([]byte, fl.n)
	if _, err := s.r.ReadAt(b, fl.off); err != nil {
		return nil, s.corrupt(fl.off, "read of %d bytes failed (%v)", fl.n, err)
	}
	return b, nil
}

// graph scans a GraphProto: inputs and outputs are decoded, initializers
// only down to their name and external-data entries.
func (s *wireScanner) graph(g field, info *ModelInfo) error {
	var inputs []TensorInfo
	inits := map[string]bool{}
	err := s.fields(g.off, g.off+g.n, func(fl field) error {
		if fl.typ != protowire.BytesType {
			return nil
		}
		switch fl.num {
		case 2:
			b, err := s.read(fl)
			info.GraphName = string(b)
			return err
		case 11, 12:
			var vi onnxpb.ValueInfoProto
			if err := s.decode(fl, &vi); err != nil {
				return err
			}
			ti := tensorInfo(&vi)
			if fl.num == 11 {
				inputs = append(inputs, ti)
			} else {
				info.Outputs = append(info.Outputs, ti)
			}
		case 5:
			info.Initializers++
			name, err := s.initializer(fl, info)
			if err != nil {
				return err
			}
			inits[name] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, in := range inputs {
		if !inits[in.Name] {
			info.Inputs = append(info.Inputs, in)
		}
	}
	return nil
}

// initializer returns a TensorProto's name and records its external data.
func (s *wireScanner) initializer(t field, info *ModelInfo) (string, error) {
	var name string
	var location string
	var length int64 = -1
	external := false
	err := s.fields(t.off, t.off+t.n, func(fl field) error {
		switch {
		case fl.num == 8 && fl.typ == protowire.BytesType:
			b, err := s.read(fl)
			name = string(b)
			return err
		case fl.num == 14 && fl.typ == protowire.VarintType:
			external = fl.v == uint64(onnxpb.TensorProto_EXTERNAL)
		case fl.num == 13 && fl.typ == protowire.BytesType:
			var kv onnxpb.StringStringEntryProto
			if err := s.decode(fl, &kv); err != nil {
				return err
			}
			switch kv.Key {
			case "location":
				location = kv.Value
			case "length":
				n, err := strconv.ParseInt(kv.Value, 10, 64)
				if err != nil {
					return s.corrupt(fl.at, "initializer %q has external length %q", name, kv.Value)
				}
				length = n
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if external {
		if location == "" {
			return "", fmt.Errorf("onnx: %s: initializer %q is stored externally but names no location", s.path, name)
		}
		if !containsString(info.ExternalFiles, location) {
			info.ExternalFiles = append(info.ExternalFiles, location)
		}
		if length > 0 {
			info.ExternalBytes += length
		}
	}
	return name, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func tensorInfo(vi *onnxpb.ValueInfoProto) TensorInfo {
	ti := TensorInfo{Name: vi.Name}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return ti
	}
	ti.DType = DType(tt.ElemType)
	if tt.Shape == nil {
		return ti
	}
	ti.Dims = make([]Dim, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		ti.Dims[i] = Dim{Size: -1}
		switch v := d.Value.(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			ti.Dims[i].Size = v.DimValue
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			ti.Dims[i].Name = v.DimParam
		}
	}
	return ti
}

// checkExternal makes sure every side file exists, stays inside the model's
// folder, and together they are as long as the initializers claim.
func checkExternal(path string, info *ModelInfo) error {
	dir := filepath.Dir(path)
	var have int64
	for _, loc := range info.ExternalFiles {
		clean := filepath.Clean(loc)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return fmt.Errorf("onnx: %s: external data location %q points outside the model's folder", path, loc)
		}
		st, err := os.Stat(filepath.Join(dir, clean))
		if err != nil {
			return fmt.Errorf("onnx: %s: external data file %s is missing (it holds this model's weights; copy it beside the .onnx file)", path, filepath.Join(dir, clean))
		}
		have += st.Size()
	}
	if have < info.ExternalBytes {
		return fmt.Errorf("onnx: %s: external data files %v hold %d bytes but the weights need %d (truncated copy?)", path, info.ExternalFiles, have, info.ExternalBytes)
	}
	return nil
}
