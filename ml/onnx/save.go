package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/face0/face0/ml/onnx/onnxpb"
)

// DefaultExternalThreshold is the total weight size above which Save moves
// weights to a side file. A protobuf message cannot exceed 2 GiB, so an SD 1.x
// UNet (3.4 GB in float32) cannot be one .onnx file; the margin leaves room
// for the graph itself.
const DefaultExternalThreshold = 1800 << 20

// minExternalBytes keeps tiny tensors (shapes, axes, scalars) inline even in
// external-data mode, as onnx.save_model does: onnxruntime constant-folds
// them while loading, and a side-file read for 8 bytes buys nothing.
const minExternalBytes = 1024

// externalAlign is the side-file offset alignment. onnxruntime memory-maps
// external data whose offset is a multiple of the page size instead of
// copying it.
const externalAlign = 4096

type saveConfig struct {
	threshold int64
	file      string
}

// SaveOption adjusts Save.
type SaveOption func(*saveConfig)

// ExternalDataThreshold sets the total initializer size (bytes) above which
// weights go to a side file; tests use a small value to exercise the path.
// Zero or less: always external.
func ExternalDataThreshold(n int64) SaveOption { return func(c *saveConfig) { c.threshold = n } }

// ExternalDataFile names the side file, relative to the model's folder
// (default: the model's file name + ".data").
func ExternalDataFile(name string) SaveOption { return func(c *saveConfig) { c.file = name } }

// Save writes the model to path. If its weights total more than the external
// threshold, every initializer of 1 KiB or more is written to a side file
// beside it and referenced through external_data (location, offset, length),
// the layout onnxruntime and the onnx Python package read. Both files are
// written to temporary names and renamed, so a crash never leaves a model
// that points into a half-written side file.
func (g *Graph) Save(path string, opts ...SaveOption) error {
	m, err := g.Model()
	if err != nil {
		return err
	}
	return SaveModel(m, path, opts...)
}

// SaveModel is Save for a ModelProto built elsewhere. m is not modified.
func SaveModel(m *onnxpb.ModelProto, path string, opts ...SaveOption) error {
	cfg := saveConfig{threshold: DefaultExternalThreshold, file: filepath.Base(path) + ".data"}
	for _, o := range opts {
		o(&cfg)
	}
	if filepath.IsAbs(cfg.file) || filepath.Base(cfg.file) != cfg.file {
		return fmt.Errorf("onnx: save %s: external data file %q must be a plain file name beside the model", path, cfg.file)
	}
	var total int64
	for _, t := range m.GetGraph().GetInitializer() {
		total += int64(len(t.RawData))
	}
	if total > cfg.threshold {
		var err error
		if m, err = externalize(m, path, cfg.file); err != nil {
			return err
		}
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("onnx: save %s: encode: %w", path, err)
	}
	return writeAtomic(path, func(f *os.File) error { _, err := f.Write(b); return err })
}

// externalize writes the large initializers to the side file and returns a
// copy of m whose initializers point there. The copy shares everything but
// the graph's initializer list, so m (and the Graph it came from) stays
// usable.
func externalize(m *onnxpb.ModelProto, path, file string) (*onnxpb.ModelProto, error) {
	src := m.GetGraph()
	inits := make([]*onnxpb.TensorProto, len(src.Initializer))
	var chunks [][]byte
	var off int64
	for i, t := range src.Initializer {
		if len(t.RawData) < minExternalBytes {
			inits[i] = t
			continue
		}
		if pad := off % externalAlign; pad != 0 {
			chunks = append(chunks, make([]byte, externalAlign-pad))
			off += externalAlign - pad
		}
		inits[i] = &onnxpb.TensorProto{
			Name:         t.Name,
			DataType:     t.DataType,
			Dims:         t.Dims,
			DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{
				{Key: "location", Value: file},
				{Key: "offset", Value: strconv.FormatInt(off, 10)},
				{Key: "length", Value: strconv.Itoa(len(t.RawData))},
			},
		}
		chunks = append(chunks, t.RawData)
		off += int64(len(t.RawData))
	}
	dataPath := filepath.Join(filepath.Dir(path), file)
	err := writeAtomic(dataPath, func(f *os.File) error {
		for _, c := range chunks {
			if _, err := f.Write(c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A field-by-field copy: proto structs must not be copied by value.
	graph := &onnxpb.GraphProto{
		Name:                   src.Name,
		Node:                   src.Node,
		Initializer:            inits,
		SparseInitializer:      src.SparseInitializer,
		DocString:              src.DocString,
		Input:                  src.Input,
		Output:                 src.Output,
		ValueInfo:              src.ValueInfo,
		QuantizationAnnotation: src.QuantizationAnnotation,
		MetadataProps:          src.MetadataProps,
	}
	out := &onnxpb.ModelProto{
		IrVersion:     m.IrVersion,
		OpsetImport:   m.OpsetImport,
		ProducerName:  m.ProducerName,
		DocString:     m.DocString,
		MetadataProps: m.MetadataProps,
		Graph:         graph,
	}
	return out, nil
}

func writeAtomic(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("onnx: save %s: %w", path, err)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("onnx: save %s: %w", path, err)
	}
	return nil
}

// Read decodes a whole .onnx file (external data stays on disk; the tensors
// keep their external_data references). For large models prefer Inspect,
// which reads only the graph's interface.
func Read(path string) (*onnxpb.ModelProto, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("onnx: %s: not a valid ONNX model (protobuf decode failed: %v)", path, err)
	}
	return &m, nil
}
