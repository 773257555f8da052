package ort

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/face0/face0/ml/onnx"
)

// ErrClosed is returned by Run on a closed session.
var ErrClosed = errors.New("session is closed")

// Session is a loaded model. It is safe for concurrent use: Run may be called
// from many goroutines at once (onnxruntime's Run is thread-safe and the
// wrapped DynamicAdvancedSession binds tensors per call, unlike
// AdvancedSession, whose tensors are fixed at creation).
type Session struct {
	path string
	info *onnx.ModelInfo
	opts Options

	mu sync.RWMutex // Run holds it shared, Close exclusively
	s  *ortgo.DynamicAdvancedSession
}

// Load opens the model at path. Its inputs and outputs are read from the
// file first (onnx.Inspect), so a corrupt file or a missing external-data
// file is reported with the file's name before onnxruntime sees it.
func Load(path string, opts Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	info, err := onnx.Inspect(path)
	if err != nil {
		return nil, fmt.Errorf("ort: load %w", err)
	}
	so, err := opts.sessionOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	s, err := ortgo.NewDynamicAdvancedSession(path, names(info.Inputs), names(info.Outputs), so)
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: onnxruntime rejected the model: %v", path, err)
	}
	return &Session{path: path, info: info, opts: opts, s: s}, nil
}

func names(ts []onnx.TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// Path is the model file.
func (s *Session) Path() string { return s.path }

// Info is the model's interface as read from the file.
func (s *Session) Info() *onnx.ModelInfo { return s.info }

// Inputs are the inputs Run needs, in the model's order.
func (s *Session) Inputs() []onnx.TensorInfo { return s.info.Inputs }

// Outputs are the outputs Run returns, in the model's order.
func (s *Session) Outputs() []onnx.TensorInfo { return s.info.Outputs }

// Close frees the session; it waits for running calls to finish.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// Run feeds every model input by name and returns every output by name.
// Shapes may vary along the model's dynamic axes (batch, height...); names,
// element types, ranks and fixed sizes are checked first and errors name the
// model file and the input.
func (s *Session) Run(inputs map[string]Tensor) (map[string]Tensor, error) {
	return s.RunContext(context.Background(), inputs)
}

// RunContext is Run that stops early, with ctx's error, when ctx is
// cancelled (onnxruntime checks between kernels).
func (s *Session) RunContext(ctx context.Context, inputs map[string]Tensor) (map[string]Tensor, error) {
	if err := s.checkInputs(inputs); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make([]ortgo.Value, len(s.info.Inputs))
	out := make([]ortgo.Value, len(s.info.Outputs))
	defer func() {
		for _, v := range append(in, out...) {
			destroy(v)
		}
	}()
	for i, ti := range s.info.Inputs {
		v, err := toValue(inputs[ti.Name])
		if err != nil {
			return nil, fmt.Errorf("ort: %s: input %q: %w", s.path, ti.Name, err)
		}
		in[i] = v
	}
	// onnxruntime_go cannot wrap a rank-0 result it allocated itself (its
	// Tensor needs at least one dim), so scalar outputs get a Scalar to fill.
	for i, ti := range s.info.Outputs {
		if ti.Rank() == 0 {
			v, err := emptyScalar(ti.DType)
			if err != nil {
				return nil, fmt.Errorf("ort: %s: output %q: %w", s.path, ti.Name, err)
			}
			out[i] = v
		}
	}

	var opts *ortgo.RunOptions
	if ctx.Done() != nil {
		var err error
		if opts, err = ortgo.NewRunOptions(); err != nil {
			return nil, fmt.Errorf("ort: %s: run options: %w", s.path, err)
		}
		defer opts.Destroy()
		stop := context.AfterFunc(ctx, func() { opts.Terminate() })
		defer stop()
	}

	s.mu.RLock()
	if s.s == nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("ort: %s: %w", s.path, ErrClosed)
	}
	err := s.s.RunWithOptions(in, out, opts)
	s.mu.RUnlock()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ort: %s: run stopped: %w", s.path, ctx.Err())
		}
		hint := ""
		if strings.Contains(err.Error(), "shape has no dimensions") {
			hint = " (a scalar output must be declared with rank 0 in the model; see onnx.Graph.OutputScalar)"
		}
		return nil, fmt.Errorf("ort: %s: run: %v%s", s.path, err, hint)
	}

	res := make(map[string]Tensor, len(out))
	for i, ti := range s.info.Outputs {
		t, err := fromValue(out[i])
		if err != nil {
			return nil, fmt.Errorf("ort: %s: output %q: %w", s.path, ti.Name, err)
		}
		res[ti.Name] = t
	}
	return res, nil
}

func (s *Session) checkInputs(inputs map[string]Tensor) error {
	for name := range inputs {
		if _, ok := s.info.Input(name); !ok {
			return fmt.Errorf("ort: %s: unknown input %q; the model's inputs are %s", s.path, name, describe(s.info.Inputs))
		}
	}
	var missing []string
	for _, ti := range s.info.Inputs {
		t, ok := inputs[ti.Name]
		if !ok {
			missing = append(missing, ti.Name)
			continue
		}
		if err := t.check(); err != nil {
			return fmt.Errorf("ort: %s: input %q: %w", s.path, ti.Name, err)
		}
		if ti.DType != 0 && t.DType() != ti.DType {
			return fmt.Errorf("ort: %s: input %q is %s; the model wants %s", s.path, ti.Name, t.DType(), ti)
		}
		if r := ti.Rank(); r >= 0 {
			if len(t.Shape) != r {
				return fmt.Errorf("ort: %s: input %q has shape %v (rank %d); the model wants %s", s.path, ti.Name, t.Shape, len(t.Shape), ti)
			}
			for i, d := range ti.Dims {
				if d.Size >= 0 && t.Shape[i] != d.Size {
					return fmt.Errorf("ort: %s: input %q has shape %v; the model wants %s (dim %d must be %d)", s.path, ti.Name, t.Shape, ti, i, d.Size)
				}
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("ort: %s: missing input %s; the model's inputs are %s", s.path, strings.Join(quote(missing), ", "), describe(s.info.Inputs))
	}
	return nil
}

func describe(ts []onnx.TensorInfo) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// toValue wraps t's Go memory for onnxruntime (no copy).
func toValue(t Tensor) (ortgo.Value, error) {
	if len(t.Shape) == 0 {
		switch d := t.Data.(type) {
		case []float32:
			return ortgo.NewScalar(d[0])
		case []int32:
			return ortgo.NewScalar(d[0])
		case []int64:
			return ortgo.NewScalar(d[0])
		}
	}
	shape := ortgo.NewShape(t.Shape...)
	switch d := t.Data.(type) {
	case []float32:
		return ortgo.NewTensor(shape, d)
	case []int32:
		return ortgo.NewTensor(shape, d)
	case []int64:
		return ortgo.NewTensor(shape, d)
	}
	return nil, fmt.Errorf("unsupported data %T", t.Data)
}

// destroy frees v. onnxruntime_go stores a typed nil in the outputs slice
// when it fails to convert a result, so a plain nil check is not enough.
func destroy(v ortgo.Value) {
	if v == nil {
		return
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return
	}
	v.Destroy()
}

func emptyScalar(dt onnx.DType) (ortgo.Value, error) {
	switch dt {
	case onnx.Float:
		return ortgo.NewEmptyScalar[float32]()
	case onnx.Int32:
		return ortgo.NewEmptyScalar[int32]()
	case onnx.Int64:
		return ortgo.NewEmptyScalar[int64]()
	}
	return nil, fmt.Errorf("scalar of type %s is not supported", dt)
}

// fromValue copies an output into a Tensor. onnxruntime_go already copied
// the data into a Go slice, which outlives the OrtValue, so it is taken as is.
func fromValue(v ortgo.Value) (Tensor, error) {
	switch v := v.(type) {
	case *ortgo.Tensor[float32]:
		return Tensor{Shape: v.GetShape().Clone(), Data: v.GetData()}, nil
	case *ortgo.Tensor[int32]:
		return Tensor{Shape: v.GetShape().Clone(), Data: v.GetData()}, nil
	case *ortgo.Tensor[int64]:
		return Tensor{Shape: v.GetShape().Clone(), Data: v.GetData()}, nil
	case *ortgo.Scalar[float32]:
		return Tensor{Data: []float32{v.GetData()}}, nil
	case *ortgo.Scalar[int32]:
		return Tensor{Data: []int32{v.GetData()}}, nil
	case *ortgo.Scalar[int64]:
		return Tensor{Data: []int64{v.GetData()}}, nil
	case nil:
		return Tensor{}, errors.New("onnxruntime returned no value")
	}
	return Tensor{}, fmt.Errorf("result of type %T is not supported (float32, int32 and int64 tensors are)", v)
}
