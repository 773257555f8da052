package onnx_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/onnx/onnxpb"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
)

func TestBuilderErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(g *onnx.Graph)
		want  []string
	}{
		{"duplicate input", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, 2)
			g.Input("x", onnx.Float, 2)
			g.Output("y", x)
		}, []string{`"x" is used twice`}},
		{"data does not fill shape", func(g *onnx.Graph) {
			w := g.Initializer("w", []float32{1, 2, 3}, 2, 2)
			g.Output("y", w)
		}, []string{`initializer "w"`, "3 values", "[2 2]"}},
		{"absent required input", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, 1, 1, 4, 4)
			g.Output("y", g.Conv(x, onnx.Value{}, onnx.Value{}))
		}, []string{"Conv", "absent"}},
		{"bad dim type", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, 2.5)
			g.Output("y", x)
		}, []string{"x: dim 0", "float64"}},
		{"no outputs", func(g *onnx.Graph) { g.Input("x", onnx.Float, 1) }, []string{"no outputs"}},
		{"heads do not divide", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, 1, 2, 6)
			g.Output("y", g.Attention(x, x, x, 4, 6, onnx.Value{}))
		}, []string{"width 6", "4 heads"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("g")
			c.build(g)
			_, err := g.Model()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestInspect(t *testing.T) {
	g := onnx.NewGraph("unet")
	x := g.Input("sample", onnx.Float, "batch", 4, "height", "width")
	ts := g.Input("timestep", onnx.Float, "batch")
	// An old-style graph lists a weight as an input too; it is not a
	// caller-fed input.
	w := g.Initializer("w", []float32{2}, 1)
	y := g.Mul(g.Mul(x, w), g.Unsqueeze(ts, 1, 2, 3))
	g.Output("out_sample", y, "batch", 4, "height", "width")
	g.SetMeta("component", "unet")
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Input = append(m.Graph.Input, &onnxpb.ValueInfoProto{Name: "w", Type: m.Graph.Input[1].Type})
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := onnx.SaveModel(m, path); err != nil {
		t.Fatal(err)
	}
	info, err := onnx.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Opset != onnx.Opset || info.IRVersion != 8 || info.GraphName != "unet" {
		t.Errorf("opset %d ir %d name %q", info.Opset, info.IRVersion, info.GraphName)
	}
	var got []string
	for _, in := range info.Inputs {
		got = append(got, in.String())
	}
	want := "sample float32[batch,4,height,width] timestep float32[batch]"
	if strings.Join(got, " ") != want {
		t.Errorf("inputs %q, want %q", strings.Join(got, " "), want)
	}
	if o, ok := info.Output("out_sample"); !ok || o.String() != "out_sample float32[batch,4,height,width]" {
		t.Errorf("output %v", o)
	}
	if info.Initializers < 1 || len(info.ExternalFiles) != 0 {
		t.Errorf("initializers %d external %v", info.Initializers, info.ExternalFiles)
	}
}

func TestInspectBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.onnx")
	g := onnx.NewGraph("g")
	x := g.Input("x", onnx.Float, 1)
	g.Output("y", g.Add(x, g.Initializer("w", make([]float32, 1024), 1024)))
	if err := g.Save(good); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ext := filepath.Join(dir, "ext.onnx")
	if err := g.Save(ext, onnx.ExternalDataThreshold(0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ext + ".data"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		want []string
	}{
		{"truncated", write("trunc.onnx", raw[:len(raw)/2]), []string{"trunc.onnx", "truncated or corrupt"}},
		{"text file", write("text.onnx", []byte("this is not a model\n")), []string{"text.onnx", "not"}},
		{"empty", write("empty.onnx", nil), []string{"empty.onnx", "not an ONNX model"}},
		{"missing", filepath.Join(dir, "none.onnx"), []string{"none.onnx", "no such file"}},
		{"missing external data", ext, []string{"ext.onnx", "ext.onnx.data is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := onnx.Inspect(c.path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestExternalData saves the same graph inline and with a side file and checks
// the side file's layout and that onnxruntime computes the same result.
func TestExternalData(t *testing.T) {
	dir := t.TempDir()
	g := onnx.NewGraph("mlp")
	x := g.Input("x", onnx.Float, "n", 300)
	w1 := make([]float32, 300*300)
	for i := range w1 {
		w1[i] = float32(math.Sin(float64(i)))
	}
	y := g.Relu(g.Linear(x, g.Initializer("w1", w1, 300, 300), g.Initializer("b1", make([]float32, 300), 300)))
	y = g.Mul(y, g.Scalar(0.5)) // a tiny constant, which must stay inline
	g.Output("y", y)

	inline := filepath.Join(dir, "inline.onnx")
	if err := g.Save(inline); err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(dir, "ext.onnx")
	if err := g.Save(ext, onnx.ExternalDataThreshold(1000), onnx.ExternalDataFile("weights.pb")); err != nil {
		t.Fatal(err)
	}
	si, _ := os.Stat(inline)
	se, _ := os.Stat(ext)
	if se.Size() > 10000 || si.Size() < 300*300*4 {
		t.Fatalf("inline %d bytes, external %d bytes: weights not moved", si.Size(), se.Size())
	}

	m, err := onnx.Read(ext)
	if err != nil {
		t.Fatal(err)
	}
	side, err := os.ReadFile(filepath.Join(dir, "weights.pb"))
	if err != nil {
		t.Fatal(err)
	}
	externals := 0
	for _, init := range m.Graph.Initializer {
		if init.DataLocation != onnxpb.TensorProto_EXTERNAL {
			if len(init.RawData) >= 1024 {
				t.Errorf("%s (%d bytes) stayed inline", init.Name, len(init.RawData))
			}
			continue
		}
		externals++
		kv := map[string]string{}
		for _, e := range init.ExternalData {
			kv[e.Key] = e.Value
		}
		if kv["location"] != "weights.pb" {
			t.Errorf("%s: location %q", init.Name, kv["location"])
		}
		if init.Name == "w1" {
			var off, n int
			if _, err := fmtSscan(kv["offset"], &off); err != nil || off%4096 != 0 {
				t.Errorf("w1 offset %q not page aligned", kv["offset"])
			}
			fmtSscan(kv["length"], &n)
			var buf bytes.Buffer
			for _, f := range w1 {
				binary.Write(&buf, binary.LittleEndian, f)
			}
			if n != buf.Len() || !bytes.Equal(side[off:off+n], buf.Bytes()) {
				t.Errorf("w1 bytes in weights.pb differ from the data")
			}
		}
	}
	if externals != 2 {
		t.Errorf("%d external tensors, want 2 (w1, b1)", externals)
	}
	info, err := onnx.Inspect(ext)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.ExternalFiles) != 1 || info.ExternalBytes != (300*300+300)*4 {
		t.Errorf("inspect: external %v, %d bytes", info.ExternalFiles, info.ExternalBytes)
	}

	orttest.Require(t)
	in := make([]float32, 2*300)
	for i := range in {
		in[i] = float32(i%7) - 3
	}
	var outs [2][]float32
	for i, p := range []string{inline, ext} {
		s, err := ort.Load(p, ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Run(map[string]ort.Tensor{"x": ort.F32(in, 2, 300)})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = r["y"].Float32()
	}
	for i := range outs[0] {
		if outs[0][i] != outs[1][i] {
			t.Fatalf("value %d: inline %g, external %g", i, outs[0][i], outs[1][i])
		}
	}
}

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }
