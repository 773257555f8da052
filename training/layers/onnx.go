package layers

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/training/model"
)

// Exporter emits layers into an ONNX graph with the weights of W as
// initializers under their own names, so an exported graph's weights can
// be matched to the checkpoint's. Pkg prefixes its panics.
type Exporter struct {
	G   *onnx.Graph
	W   model.Weights
	Pkg string
	// Half stores the weights of Linear and Conv as float16 and computes
	// them in float16 (their input is cast when it is float32); GroupNorm
	// and LayerNorm compute in float32 between casts, since a variance in
	// float16 overflows at activations above 256. The caller casts the
	// graph's output back. SD's UNet runs so on GPUs at half the memory.
	Half bool
	// Consume removes each weight from W once it is in the graph, so that
	// a full-size network is not held twice (as float32 and as the
	// graph's bytes) while it exports.
	Consume bool
}

// weight takes W[name] (and forgets it with Consume). A missing weight
// panics: the weights have passed Check, so it is a naming bug in the
// exporter.
func (e Exporter) weight(name string) *model.Tensor {
	t := e.W[name]
	if t == nil {
		panic(fmt.Sprintf("%s: export: no weight %q", e.Pkg, name))
	}
	if e.Consume {
		delete(e.W, name)
	}
	return t
}

// Init is weight name as a float32 initializer.
func (e Exporter) Init(name string) onnx.Value {
	t := e.weight(name)
	return e.G.Initializer(name, t.Data, t.Shape...)
}

// initHalf is weight name as a float16 initializer when Half, else Init.
func (e Exporter) initHalf(name string) onnx.Value {
	if !e.Half {
		return e.Init(name)
	}
	t := e.weight(name)
	return e.G.InitializerHalf(name, t.Data, t.Shape...)
}

// compute casts x to the type Linear and Conv compute in (float16 when
// Half).
func (e Exporter) compute(x onnx.Value) onnx.Value {
	if e.Half && x.DType != onnx.Float16 {
		return e.G.Cast(x, onnx.Float16)
	}
	return x
}

// norm runs a normalisation in float32: with Half its input is cast up and
// its result back down.
func (e Exporter) norm(x onnx.Value, f func(onnx.Value) onnx.Value) onnx.Value {
	if x.DType != onnx.Float16 {
		return f(x)
	}
	return e.G.Cast(f(e.G.Cast(x, onnx.Float)), onnx.Float16)
}

// Linear is x·Wᵀ (+ b with bias). The initializer keeps the weight's name
// but holds it transposed to [in, out], for MatMul (as torch.onnx's export
// does).
func (e Exporter) Linear(name string, x onnx.Value, bias bool) onnx.Value {
	t := e.weight(name + ".weight")
	out, in := t.Shape[0], t.Shape[1]
	tr := make([]float32, len(t.Data))
	for o := range out {
		for i := range in {
			tr[i*out+o] = t.Data[o*in+i]
		}
	}
	var W onnx.Value
	if e.Half {
		W = e.G.InitializerHalf(name+".weight", tr, in, out)
	} else {
		W = e.G.Initializer(name+".weight", tr, in, out)
	}
	b := onnx.Value{}
	if bias {
		b = e.initHalf(name + ".bias")
	}
	return e.G.Linear(e.compute(x), W, b)
}

// Conv is a square-kernel convolution with bias, stride and symmetric pad.
func (e Exporter) Conv(name string, x onnx.Value, stride, pad int) onnx.Value {
	return e.G.Conv2D(e.compute(x), e.initHalf(name+".weight"), e.initHalf(name+".bias"), stride, pad)
}

// GroupNorm is torch's GroupNorm (NCHW) with weight and bias of name.
func (e Exporter) GroupNorm(name string, x onnx.Value, groups int, eps float32) onnx.Value {
	return e.norm(x, func(x onnx.Value) onnx.Value {
		return e.G.GroupNorm(x, groups, e.Init(name+".weight"), e.Init(name+".bias"), eps)
	})
}

// LayerNorm is torch's LayerNorm over the last axis with weight and bias of name.
func (e Exporter) LayerNorm(name string, x onnx.Value, eps float32) onnx.Value {
	return e.norm(x, func(x onnx.Value) onnx.Value {
		return e.G.LayerNorm(x, e.Init(name+".weight"), e.Init(name+".bias"), eps)
	})
}

// Save writes g to path, creating its folder, for the networks' WriteONNX
// (opts go to onnx's Save). A failed save is "pkg: export path: …".
func Save(g *onnx.Graph, path, pkg string, opts ...onnx.SaveOption) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := g.Save(path, opts...); err != nil {
		return fmt.Errorf("%s: export %s: %w", pkg, path, err)
	}
	return nil
}

// ReadONNX reads back the weights an Exporter wrote into the model at path
// (inline or in side files, float32 or float16): every tensor of specs, by
// its name, with Linear's transposition undone for the specs transposed
// says are linear weights, so the result is what was exported (to float16
// rounding for a Half export). The graph's own constants are skipped. The
// error names every missing and mis-shaped tensor.
func ReadONNX(path string, specs []model.ParamSpec, transposed func(model.ParamSpec) bool, what string) (model.Weights, error) {
	want := make(map[string]model.ParamSpec, len(specs))
	for _, s := range specs {
		want[s.Name] = s
	}
	w := model.Weights{}
	err := onnx.ReadFloats(path, func(name string, shape []int, data []float32) error {
		s, ok := want[name]
		if !ok {
			return nil
		}
		if transposed(s) && len(shape) == 2 {
			in, out := shape[0], shape[1]
			tr := make([]float32, len(data))
			for i := range in {
				for o := range out {
					tr[o*in+i] = data[i*out+o]
				}
			}
			data, shape = tr, []int{out, in}
		}
		w[name] = &model.Tensor{Shape: shape, Data: data}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := Check(w, specs, what+": "+path); err != nil {
		return nil, err
	}
	return w, nil
}
