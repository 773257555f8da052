package onnx_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
)

// These tests are the builder's correctness check: each graph runs in
// onnxruntime and must match plain Go arithmetic.

// tensor is a test tensor: shape + float data.
type tensor struct {
	shape []int
	data  []float32
}

func randT(r *rand.Rand, shape ...int) tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64())
	}
	return tensor{shape, d}
}

func (t tensor) ort() ort.Tensor {
	s := make([]int64, len(t.shape))
	for i, d := range t.shape {
		s[i] = int64(d)
	}
	return ort.F32(t.data, s...)
}

func dimsAny(shape []int) []any {
	out := make([]any, len(shape))
	for i, d := range shape {
		out[i] = d
	}
	// A dynamic first axis: every op must keep working with a batch size
	// only known at run time.
	if len(out) > 0 {
		out[0] = "n"
	}
	return out
}

type opCase struct {
	name   string
	inputs []tensor // fed as x0, x1, ...
	// weights are added as initializers w0, w1, ...
	weights []tensor
	build   func(g *onnx.Graph, x, w []onnx.Value) onnx.Value
	ref     func(x, w []tensor) tensor
	tol     float64
}

func TestOpsMatchGo(t *testing.T) {
	orttest.Require(t)
	r := rand.New(rand.NewPCG(1, 2))
	cases := []opCase{
		{
			name:    "conv3x3 pad1",
			inputs:  []tensor{randT(r, 2, 3, 5, 6)},
			weights: []tensor{randT(r, 4, 3, 3, 3), randT(r, 4)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Conv2D(x[0], w[0], w[1], 1, 1)
			},
			ref: func(x, w []tensor) tensor { return conv2d(x[0], w[0], w[1].data, 1, 1) },
		},
		{
			name:    "conv3x3 stride2 no bias",
			inputs:  []tensor{randT(r, 1, 2, 7, 8)},
			weights: []tensor{randT(r, 3, 2, 3, 3)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Conv2D(x[0], w[0], onnx.Value{}, 2, 1)
			},
			ref: func(x, w []tensor) tensor { return conv2d(x[0], w[0], nil, 2, 1) },
		},
		{
			name:    "conv1x1",
			inputs:  []tensor{randT(r, 2, 4, 3, 3)},
			weights: []tensor{randT(r, 5, 4, 1, 1), randT(r, 5)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Conv2D(x[0], w[0], w[1], 1, 0)
			},
			ref: func(x, w []tensor) tensor { return conv2d(x[0], w[0], w[1].data, 1, 0) },
		},
		{
			name:    "linear (batched matmul + bias)",
			inputs:  []tensor{randT(r, 2, 3, 4)},
			weights: []tensor{randT(r, 4, 5), randT(r, 5)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Linear(x[0], w[0], w[1])
			},
			ref: func(x, w []tensor) tensor { return linear(x[0], w[0], w[1].data) },
		},
		{
			name:    "gemm transB",
			inputs:  []tensor{randT(r, 3, 4)},
			weights: []tensor{randT(r, 5, 4), randT(r, 5)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Gemm(x[0], w[0], w[1], true)
			},
			ref: func(x, w []tensor) tensor { return linear(x[0], transpose2(w[0]), w[1].data) },
		},
		{
			name:    "groupnorm",
			inputs:  []tensor{randT(r, 2, 8, 3, 4)},
			weights: []tensor{randT(r, 8), randT(r, 8)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.GroupNorm(x[0], 4, w[0], w[1], 1e-5)
			},
			ref: func(x, w []tensor) tensor { return groupNorm(x[0], 4, w[0].data, w[1].data, 1e-5) },
		},
		{
			name:    "layernorm",
			inputs:  []tensor{randT(r, 2, 3, 6)},
			weights: []tensor{randT(r, 6), randT(r, 6)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.LayerNorm(x[0], w[0], w[1], 1e-5)
			},
			ref: func(x, w []tensor) tensor { return layerNorm(x[0], w[0].data, w[1].data, 1e-5) },
		},
		{
			name:   "softmax last axis",
			inputs: []tensor{randT(r, 2, 3, 7)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Softmax(x[0], -1)
			},
			ref: func(x, w []tensor) tensor { return softmax(x[0]) },
		},
		{
			name:   "attention 2 heads",
			inputs: []tensor{randT(r, 2, 5, 8), randT(r, 2, 7, 8), randT(r, 2, 7, 8)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Attention(x[0], x[1], x[2], 2, 8, onnx.Value{})
			},
			ref: func(x, w []tensor) tensor { return attention(x[0], x[1], x[2], 2, nil) },
		},
		{
			name:    "attention causal mask",
			inputs:  []tensor{randT(r, 2, 4, 6), randT(r, 2, 4, 6), randT(r, 2, 4, 6)},
			weights: []tensor{causal(4)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Attention(x[0], x[1], x[2], 3, 6, w[0])
			},
			ref: func(x, w []tensor) tensor { return attention(x[0], x[1], x[2], 3, w[0].data) },
		},
		{
			name:   "upsample2x nearest",
			inputs: []tensor{randT(r, 2, 3, 2, 3)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Upsample2x(x[0])
			},
			ref: func(x, w []tensor) tensor { return upsample(x[0]) },
		},
		{
			name:   "gelu silu quickgelu",
			inputs: []tensor{randT(r, 2, 9)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				return g.Concat(1, g.Gelu(x[0]), g.SiLU(x[0]), g.QuickGelu(x[0]))
			},
			ref: func(x, w []tensor) tensor {
				a := mapT(x[0], func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) })
				b := mapT(x[0], func(v float64) float64 { return v / (1 + math.Exp(-v)) })
				c := mapT(x[0], func(v float64) float64 { return v / (1 + math.Exp(-1.702*v)) })
				return concat1(a, b, c)
			},
		},
		{
			name:   "sin cos transpose slice",
			inputs: []tensor{randT(r, 2, 3, 4)},
			build: func(g *onnx.Graph, x, w []onnx.Value) onnx.Value {
				s := g.Sin(g.Transpose(x[0], 0, 2, 1)) // [n,4,3]
				return g.Cos(g.Slice(s, []int64{1}, []int64{3}, []int64{1}))
			},
			ref: func(x, w []tensor) tensor {
				in := x[0]
				out := tensor{shape: []int{2, 2, 3}}
				for b := 0; b < 2; b++ {
					for i := 1; i < 3; i++ {
						for j := 0; j < 3; j++ {
							v := float64(in.data[b*12+j*4+i])
							out.data = append(out.data, float32(math.Cos(math.Sin(v))))
						}
					}
				}
				return out
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("test")
			xs := make([]onnx.Value, len(c.inputs))
			feed := map[string]ort.Tensor{}
			for i, in := range c.inputs {
				name := "x" + string(rune('0'+i))
				xs[i] = g.Input(name, onnx.Float, dimsAny(in.shape)...)
				feed[name] = in.ort()
			}
			ws := make([]onnx.Value, len(c.weights))
			for i, w := range c.weights {
				ws[i] = g.Initializer("w"+string(rune('0'+i)), w.data, w.shape...)
			}
			g.Output("y", c.build(g, xs, ws))
			path := filepath.Join(t.TempDir(), "op.onnx")
			if err := g.Save(path); err != nil {
				t.Fatal(err)
			}
			s, err := ort.Load(path, ort.Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			out, err := s.Run(feed)
			if err != nil {
				t.Fatal(err)
			}
			want := c.ref(c.inputs, c.weights)
			tol := c.tol
			if tol == 0 {
				tol = 1e-4
			}
			compare(t, out["y"], want, tol)
		})
	}
}

func compare(t *testing.T, got ort.Tensor, want tensor, tol float64) {
	t.Helper()
	if len(got.Shape) != len(want.shape) {
		t.Fatalf("shape %v, want %v", got.Shape, want.shape)
	}
	for i := range want.shape {
		if got.Shape[i] != int64(want.shape[i]) {
			t.Fatalf("shape %v, want %v", got.Shape, want.shape)
		}
	}
	g := got.Float32()
	if len(g) != len(want.data) {
		t.Fatalf("%d values, want %d", len(g), len(want.data))
	}
	var worst float64
	for i := range g {
		d := math.Abs(float64(g[i]-want.data[i])) / math.Max(1, math.Abs(float64(want.data[i])))
		worst = math.Max(worst, d)
		if d > tol {
			t.Fatalf("value %d: onnxruntime %g, Go %g (rel. error %.2g > %.2g)", i, g[i], want.data[i], d, tol)
		}
	}
	t.Logf("max rel. error %.2g over %d values", worst, len(g))
}

// ---- Go references ----

func conv2d(x, w tensor, b []float32, stride, pad int) tensor {
	n, c, h, wd := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	m, kh, kw := w.shape[0], w.shape[2], w.shape[3]
	oh := (h+2*pad-kh)/stride + 1
	ow := (wd+2*pad-kw)/stride + 1
	out := tensor{shape: []int{n, m, oh, ow}, data: make([]float32, n*m*oh*ow)}
	for in := 0; in < n; in++ {
		for om := 0; om < m; om++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					var s float64
					if b != nil {
						s = float64(b[om])
					}
					for ic := 0; ic < c; ic++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								s += float64(x.data[((in*c+ic)*h+iy)*wd+ix]) * float64(w.data[((om*c+ic)*kh+ky)*kw+kx])
							}
						}
					}
					out.data[((in*m+om)*oh+oy)*ow+ox] = float32(s)
				}
			}
		}
	}
	return out
}

// linear is x[..., K] · w[K, N] + b.
func linear(x, w tensor, b []float32) tensor {
	k, n := w.shape[0], w.shape[1]
	rows := len(x.data) / k
	shape := append(append([]int(nil), x.shape[:len(x.shape)-1]...), n)
	out := tensor{shape: shape, data: make([]float32, rows*n)}
	for r := 0; r < rows; r++ {
		for j := 0; j < n; j++ {
			var s float64
			if b != nil {
				s = float64(b[j])
			}
			for i := 0; i < k; i++ {
				s += float64(x.data[r*k+i]) * float64(w.data[i*n+j])
			}
			out.data[r*n+j] = float32(s)
		}
	}
	return out
}

func transpose2(w tensor) tensor {
	r, c := w.shape[0], w.shape[1]
	out := tensor{shape: []int{c, r}, data: make([]float32, r*c)}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out.data[j*r+i] = w.data[i*c+j]
		}
	}
	return out
}

func groupNorm(x tensor, groups int, scale, bias []float32, eps float64) tensor {
	n, c := x.shape[0], x.shape[1]
	hw := len(x.data) / (n * c)
	per := c / groups * hw
	out := tensor{shape: x.shape, data: make([]float32, len(x.data))}
	for b := 0; b < n; b++ {
		for gi := 0; gi < groups; gi++ {
			base := (b*c + gi*(c/groups)) * hw
			seg := x.data[base : base+per]
			mean, variance := meanVar(seg)
			for i, v := range seg {
				ch := gi*(c/groups) + i/hw
				out.data[base+i] = float32((float64(v)-mean)/math.Sqrt(variance+eps)*float64(scale[ch]) + float64(bias[ch]))
			}
		}
	}
	return out
}

func layerNorm(x tensor, scale, bias []float32, eps float64) tensor {
	d := x.shape[len(x.shape)-1]
	out := tensor{shape: x.shape, data: make([]float32, len(x.data))}
	for r := 0; r < len(x.data)/d; r++ {
		seg := x.data[r*d : (r+1)*d]
		mean, variance := meanVar(seg)
		for i, v := range seg {
			out.data[r*d+i] = float32((float64(v)-mean)/math.Sqrt(variance+eps)*float64(scale[i]) + float64(bias[i]))
		}
	}
	return out
}

func meanVar(v []float32) (mean, variance float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		variance += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, variance / float64(len(v))
}

func softmax(x tensor) tensor {
	d := x.shape[len(x.shape)-1]
	out := tensor{shape: x.shape, data: make([]float32, len(x.data))}
	for r := 0; r < len(x.data)/d; r++ {
		softmaxRow(out.data[r*d:(r+1)*d], x.data[r*d:(r+1)*d])
	}
	return out
}

func softmaxRow(dst, src []float32) {
	m := math.Inf(-1)
	for _, v := range src {
		m = math.Max(m, float64(v))
	}
	var s float64
	for i, v := range src {
		e := math.Exp(float64(v) - m)
		dst[i] = float32(e)
		s += e
	}
	for i := range dst {
		dst[i] = float32(float64(dst[i]) / s)
	}
}

// attention on [B,L,D] q and [B,S,D] k, v with an optional [L,S] additive mask.
func attention(q, k, v tensor, heads int, mask []float32) tensor {
	b, l, d := q.shape[0], q.shape[1], q.shape[2]
	s := k.shape[1]
	dh := d / heads
	out := tensor{shape: q.shape, data: make([]float32, len(q.data))}
	scores := make([]float32, s)
	for bi := 0; bi < b; bi++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < l; i++ {
				for j := 0; j < s; j++ {
					var dot float64
					for e := 0; e < dh; e++ {
						dot += float64(q.data[(bi*l+i)*d+h*dh+e]) * float64(k.data[(bi*s+j)*d+h*dh+e])
					}
					dot /= math.Sqrt(float64(dh))
					if mask != nil {
						dot += float64(mask[i*s+j])
					}
					scores[j] = float32(dot)
				}
				softmaxRow(scores, scores)
				for e := 0; e < dh; e++ {
					var acc float64
					for j := 0; j < s; j++ {
						acc += float64(scores[j]) * float64(v.data[(bi*s+j)*d+h*dh+e])
					}
					out.data[(bi*l+i)*d+h*dh+e] = float32(acc)
				}
			}
		}
	}
	return out
}

func causal(n int) tensor {
	m := make([]float32, n*n)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			m[i*n+j] = -1e9
		}
	}
	return tensor{[]int{n, n}, m}
}

func upsample(x tensor) tensor {
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	out := tensor{shape: []int{n, c, 2 * h, 2 * w}, data: make([]float32, 4*len(x.data))}
	for p := 0; p < n*c; p++ {
		for y := 0; y < 2*h; y++ {
			for xx := 0; xx < 2*w; xx++ {
				out.data[(p*2*h+y)*2*w+xx] = x.data[(p*h+y/2)*w+xx/2]
			}
		}
	}
	return out
}

func mapT(x tensor, f func(float64) float64) tensor {
	out := tensor{shape: x.shape, data: make([]float32, len(x.data))}
	for i, v := range x.data {
		out.data[i] = float32(f(float64(v)))
	}
	return out
}

// concat1 joins 2-D tensors along axis 1.
func concat1(ts ...tensor) tensor {
	rows := ts[0].shape[0]
	cols := 0
	for _, t := range ts {
		cols += t.shape[1]
	}
	out := tensor{shape: []int{rows, cols}}
	for r := 0; r < rows; r++ {
		for _, t := range ts {
			out.data = append(out.data, t.data[r*t.shape[1]:(r+1)*t.shape[1]]...)
		}
	}
	return out
}
