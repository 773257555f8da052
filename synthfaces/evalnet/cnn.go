package evalnet

import (
	"math"
	"math/rand/v2"
)

// Side is the resolution both networks read: every image is first brought
// to Side×Side (the tiny model's resolution).
const Side = 32

// cnn is a small convolutional network on a Side×Side×3 image: three
// blocks of 3×3 convolution (stride 1, zero padding) + ReLU + 2×2 max
// pooling, then a linear layer on the flattened 4×4×c3 map. Activations are
// HWC, float32. It is written out by hand (forward and backward) because
// the project's GoMLX backend has no convolution gradient, and because a
// network of this size trains in minutes on two cores this way.
type cnn struct {
	ch    [3]int // output channels of the three blocks
	out   int    // outputs of the linear layer
	convs [3]conv
	fc    linear
}

type conv struct {
	cin, cout int
	w         []float32 // [ky][kx][cin][cout]
	b         []float32 // [cout]
}

type linear struct {
	in, out int
	w       []float32 // [out][in]
	b       []float32 // [out]
}

func newCNN(ch [3]int, out int, r *rand.Rand) *cnn {
	n := &cnn{ch: ch, out: out}
	cin := 3
	for i, c := range ch {
		n.convs[i] = conv{cin: cin, cout: c, w: make([]float32, 9*cin*c), b: make([]float32, c)}
		he(n.convs[i].w, 9*cin, r)
		cin = c
	}
	in := 4 * 4 * ch[2]
	n.fc = linear{in: in, out: out, w: make([]float32, in*out), b: make([]float32, out)}
	for i := range n.fc.w {
		n.fc.w[i] = float32(r.NormFloat64() * math.Sqrt(1/float64(in)))
	}
	return n
}

func he(w []float32, fanIn int, r *rand.Rand) {
	s := math.Sqrt(2 / float64(fanIn))
	for i := range w {
		w[i] = float32(r.NormFloat64() * s)
	}
}

// params lists the weight slices in a fixed order (for the optimizer and
// the weight files).
func (n *cnn) params() [][]float32 {
	var p [][]float32
	for i := range n.convs {
		p = append(p, n.convs[i].w, n.convs[i].b)
	}
	return append(p, n.fc.w, n.fc.b)
}

// acts holds one example's activations, kept for the backward pass.
type acts struct {
	x    []float32 // input, Side×Side×3
	a    [3][]float32
	p    [3][]float32
	arg  [3][]int32 // argmax index into a[i] of each pooled value
	side [3]int     // spatial side of a[i]
	out  []float32
}

func (n *cnn) newActs() *acts {
	a := &acts{x: make([]float32, Side*Side*3), out: make([]float32, n.out)}
	s := Side
	for i, c := range n.ch {
		a.side[i] = s
		a.a[i] = make([]float32, s*s*c)
		a.p[i] = make([]float32, s/2*s/2*c)
		a.arg[i] = make([]int32, s/2*s/2*c)
		s /= 2
	}
	return a
}

// forward runs the network on a.x, filling a.
func (n *cnn) forward(a *acts) {
	in := a.x
	for i := range n.convs {
		s := a.side[i]
		n.convs[i].forward(in, s, a.a[i])
		maxPool(a.a[i], s, n.ch[i], a.p[i], a.arg[i])
		in = a.p[i]
	}
	n.fc.forward(in, a.out)
}

// backward accumulates into g (same layout as n) the gradient of the loss
// whose gradient with respect to a.out is dout. scratch is reused.
func (n *cnn) backward(a *acts, dout []float32, g *cnn, s *scratch) {
	dp := s.buf(len(a.p[2]), 0)
	n.fc.backward(a.p[2], dout, &g.fc, dp)
	for i := 2; i >= 0; i-- {
		side := a.side[i]
		da := s.buf(len(a.a[i]), 1)
		clear(da)
		for k, j := range a.arg[i] {
			da[j] += dp[k]
		}
		// ReLU: the pooled maxima that were 0 pass no gradient.
		for k, v := range a.a[i] {
			if v <= 0 {
				da[k] = 0
			}
		}
		var in, din []float32
		if i > 0 {
			in = a.p[i-1]
			din = s.buf(len(in), 0)
			clear(din)
		} else {
			in = a.x
		}
		n.convs[i].backward(in, side, da, &g.convs[i], din)
		dp = din
	}
}

// scratch holds two reusable buffers per worker.
type scratch struct{ b [2][]float32 }

func (s *scratch) buf(n, k int) []float32 {
	if cap(s.b[k]) < n {
		s.b[k] = make([]float32, n)
	}
	return s.b[k][:n]
}

func (c *conv) forward(in []float32, side int, out []float32) {
	cin, cout := c.cin, c.cout
	for y := range side {
		for x := range side {
			o := out[(y*side+x)*cout:][:cout]
			copy(o, c.b)
			for ky := range 3 {
				iy := y + ky - 1
				if iy < 0 || iy >= side {
					continue
				}
				for kx := range 3 {
					ix := x + kx - 1
					if ix < 0 || ix >= side {
						continue
					}
					inp := in[(iy*side+ix)*cin:][:cin]
					wb := c.w[(ky*3+kx)*cin*cout:]
					for ci, v := range inp {
						if v == 0 {
							continue
						}
						axpy(o, wb[ci*cout:][:cout], v)
					}
				}
			}
			for k, v := range o {
				if v < 0 {
					o[k] = 0
				}
			}
		}
	}
}

// backward: dout is the gradient at the conv's (pre-ReLU) output, already
// masked; din may be nil (the input layer).
func (c *conv) backward(in []float32, side int, dout []float32, g *conv, din []float32) {
	cin, cout := c.cin, c.cout
	for y := range side {
		for x := range side {
			d := dout[(y*side+x)*cout:][:cout]
			zero := true
			for _, v := range d {
				if v != 0 {
					zero = false
					break
				}
			}
			if zero {
				continue
			}
			axpy(g.b, d, 1)
			for ky := range 3 {
				iy := y + ky - 1
				if iy < 0 || iy >= side {
					continue
				}
				for kx := range 3 {
					ix := x + kx - 1
					if ix < 0 || ix >= side {
						continue
					}
					off := (iy*side + ix) * cin
					inp := in[off:][:cin]
					base := (ky*3 + kx) * cin * cout
					for ci, v := range inp {
						if v != 0 {
							axpy(g.w[base+ci*cout:][:cout], d, v)
						}
						if din != nil {
							din[off+ci] += dot(c.w[base+ci*cout:][:cout], d)
						}
					}
				}
			}
		}
	}
}

func maxPool(a []float32, side, c int, p []float32, arg []int32) {
	h := side / 2
	for y := range h {
		for x := range h {
			for ch := range c {
				best := int32((2*y*side+2*x)*c + ch)
				for _, d := range [3][2]int{{0, 1}, {1, 0}, {1, 1}} {
					j := int32(((2*y+d[0])*side+2*x+d[1])*c + ch)
					if a[j] > a[best] {
						best = j
					}
				}
				k := (y*h+x)*c + ch
				p[k], arg[k] = a[best], best
			}
		}
	}
}

func (l *linear) forward(in, out []float32) {
	for o := range l.out {
		out[o] = l.b[o] + dot(l.w[o*l.in:][:l.in], in)
	}
}

func (l *linear) backward(in, dout []float32, g *linear, din []float32) {
	clear(din)
	for o, d := range dout {
		if d == 0 {
			continue
		}
		g.b[o] += d
		axpy(g.w[o*l.in:][:l.in], in, d)
		axpy(din, l.w[o*l.in:][:l.in], d)
	}
}

// axpy: y += a·x.
func axpy(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// zeroLike is a network of n's shape with zero weights (a gradient buffer).
func (n *cnn) zeroLike() *cnn {
	g := &cnn{ch: n.ch, out: n.out}
	for i, c := range n.convs {
		g.convs[i] = conv{cin: c.cin, cout: c.cout, w: make([]float32, len(c.w)), b: make([]float32, len(c.b))}
	}
	g.fc = linear{in: n.fc.in, out: n.fc.out, w: make([]float32, len(n.fc.w)), b: make([]float32, len(n.fc.b))}
	return g
}

// adam is Adam with decoupled weight decay over a list of parameter
// slices.
type adam struct {
	lr, b1, b2, eps, wd float64
	t                   int
	m, v                [][]float32
}

func newAdam(params [][]float32, lr, wd float64) *adam {
	a := &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, wd: wd}
	for _, p := range params {
		a.m = append(a.m, make([]float32, len(p)))
		a.v = append(a.v, make([]float32, len(p)))
	}
	return a
}

// step applies the gradients grads (scaled by gscale) to params at
// learning rate lr·a.lr.
func (a *adam) step(params, grads [][]float32, gscale, lrScale float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	lr := a.lr * lrScale
	b1, b2 := float32(a.b1), float32(a.b2)
	step := float32(lr / c1)
	sc2 := float32(1 / math.Sqrt(c2))
	decay := float32(1 - lr*a.wd)
	gs := float32(gscale)
	for i, p := range params {
		m, v, g := a.m[i], a.v[i], grads[i]
		for k := range p {
			gk := g[k] * gs
			m[k] = b1*m[k] + (1-b1)*gk
			v[k] = b2*v[k] + (1-b2)*gk*gk
			p[k] = p[k]*decay - step*m[k]/(float32(math.Sqrt(float64(v[k])))*sc2+float32(a.eps))
		}
	}
}
