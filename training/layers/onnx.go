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
}

// Init is weight name as an initializer. A missing weight panics: the
// weights have passed Check, so it is a naming bug in the exporter.
func (e Exporter) Init(name string) onnx.Value {
	t := e.W[name]
	if t == nil {
		panic(fmt.Sprintf("%s: export: no weight %q", e.Pkg, name))
	}
	return e.G.Initializer(name, t.Data, t.Shape...)
}

// Linear is x·Wᵀ (+ b with bias). The initializer keeps the weight's name
// but holds it transposed to [in, out], for MatMul (as torch.onnx's export
// does).
func (e Exporter) Linear(name string, x onnx.Value, bias bool) onnx.Value {
	t := e.W[name+".weight"]
	if t == nil {
		panic(fmt.Sprintf("%s: export: no weight %q", e.Pkg, name+".weight"))
	}
	out, in := t.Shape[0], t.Shape[1]
	tr := make([]float32, len(t.Data))
	for o := range out {
		for i := range in {
			tr[i*out+o] = t.Data[o*in+i]
		}
	}
	W := e.G.Initializer(name+".weight", tr, in, out)
	b := onnx.Value{}
	if bias {
		b = e.Init(name + ".bias")
	}
	return e.G.Linear(x, W, b)
}

// Conv is a square-kernel convolution with bias, stride and symmetric pad.
func (e Exporter) Conv(name string, x onnx.Value, stride, pad int) onnx.Value {
	return e.G.Conv2D(x, e.Init(name+".weight"), e.Init(name+".bias"), stride, pad)
}

// GroupNorm is torch's GroupNorm (NCHW) with weight and bias of name.
func (e Exporter) GroupNorm(name string, x onnx.Value, groups int, eps float32) onnx.Value {
	return e.G.GroupNorm(x, groups, e.Init(name+".weight"), e.Init(name+".bias"), eps)
}

// LayerNorm is torch's LayerNorm over the last axis with weight and bias of name.
func (e Exporter) LayerNorm(name string, x onnx.Value, eps float32) onnx.Value {
	return e.G.LayerNorm(x, e.Init(name+".weight"), e.Init(name+".bias"), eps)
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
