package faceapi

import (
	"math"
	"runtime"
	"sync"
)

// fmap is one activation map, NHWC with the batch of one dropped.
type fmap struct {
	h, w, c int
	d       []float32
}

func newFmap(h, w, c int) fmap { return fmap{h, w, c, make([]float32, h*w*c)} }

// at returns the channel vector of pixel (y, x).
func (m fmap) at(y, x int) []float32 {
	i := (y*m.w + x) * m.c
	return m.d[i : i+m.c : i+m.c]
}

// activation applied after a convolution.
type activation int

const (
	linear activation = iota
	relu
	leaky // TF.js leaky with alpha 0.1, as the tiny detector uses
	relu6
)

// activate applies a to v in place.
//
//go:norace
func activate(v []float32, a activation) {
	switch a {
	case relu:
		for i, x := range v {
			if x < 0 {
				v[i] = 0
			}
		}
	case leaky:
		for i, x := range v {
			if x < 0 {
				v[i] = x * 0.1
			}
		}
	case relu6:
		for i, x := range v {
			v[i] = min(max(x, 0), 6)
		}
	}
}

// window describes how a kernel of size k with stride s slides over an axis:
// the output size and the implicit zero padding before the first element.
type window struct{ out, pad int }

// validWindow is TF's "valid" padding: no padding, partial windows dropped.
func validWindow(in, k, s int) window { return window{(in-k)/s + 1, 0} }

// sameWindow is TF's "same" padding: ceil(in/s) outputs, the padding split
// with the odd element after the data.
func sameWindow(in, k, s int) window {
	out := (in + s - 1) / s
	total := max((out-1)*s+k-in, 0)
	return window{out, total / 2}
}

// parallelRows runs fn over [0, n) split into contiguous chunks, one per CPU.
// The nets spend nearly all their time in per-row convolution loops, so
// splitting rows is the only parallelism they need.
func parallelRows(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range workers {
		lo, hi := i*n/workers, (i+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// conv is a 2-D convolution with filters in TF's HWIO layout
// ([kh, kw, in, out]), a per-output-channel bias and an activation.
type conv struct {
	kh, kw, in, out int
	filters         []float32
	bias            []float32
}

func newConv(kh, kw, in, out int, filters, bias []float32) *conv {
	return &conv{kh: kh, kw: kw, in: in, out: out, filters: filters, bias: bias}
}

// apply convolves x with stride s; wy and wx give output size and padding.
//
// Each input value is multiplied into all output channels at once (axpy),
// which skips the many zeros ReLU leaves. A register-blocked kernel without
// that skip measured about 30% slower on the recogniser and SSD; scalar Go
// is near one multiply-add per cycle either way.
func (cv *conv) apply(x fmap, s int, wy, wx window, act activation) fmap {
	o := newFmap(wy.out, wx.out, cv.out)
	parallelRows(wy.out, func(lo, hi int) {
		for oy := lo; oy < hi; oy++ {
			for ox := 0; ox < wx.out; ox++ {
				acc := o.at(oy, ox)
				copy(acc, cv.bias)
				for ky := range cv.kh {
					iy := oy*s - wy.pad + ky
					if iy < 0 || iy >= x.h {
						continue
					}
					for kx := range cv.kw {
						ix := ox*s - wx.pad + kx
						if ix < 0 || ix >= x.w {
							continue
						}
						k := cv.filters[(ky*cv.kw+kx)*cv.in*cv.out:]
						for ci, a := range x.at(iy, ix) {
							if a != 0 {
								axpy(acc, k[ci*cv.out:(ci+1)*cv.out], a)
							}
						}
					}
				}
				activate(acc, act)
			}
		}
	})
	return o
}

// The leaf loops below are marked go:norace: under the race detector they
// would run some hundred times slower and make `go test -race` take many
// minutes. They touch only the slices their callers pass, and the callers'
// own writes to the same output rows (copying the bias or -Inf in) stay
// instrumented, so goroutines handed overlapping rows are still caught.

// axpy does y += a*x, unrolled by four since the Go compiler does not
// vectorise.
//
//go:norace
func axpy(y, x []float32, a float32) {
	n := len(y)
	x = x[:n]
	i := 0
	for ; i+4 <= n; i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < n; i++ {
		y[i] += a * x[i]
	}
}

// depthwise is a 3x3-or-other depthwise convolution with channel multiplier
// one, filters in TF's [kh, kw, c, 1] layout, and an optional bias.
type depthwise struct {
	kh, kw, c int
	filters   []float32
	bias      []float32 // nil for none
}

func (dw *depthwise) apply(x fmap, s int, wy, wx window, act activation) fmap {
	o := newFmap(wy.out, wx.out, dw.c)
	parallelRows(wy.out, func(lo, hi int) {
		for oy := lo; oy < hi; oy++ {
			for ox := 0; ox < wx.out; ox++ {
				acc := o.at(oy, ox)
				if dw.bias != nil {
					copy(acc, dw.bias)
				}
				for ky := range dw.kh {
					iy := oy*s - wy.pad + ky
					if iy < 0 || iy >= x.h {
						continue
					}
					for kx := range dw.kw {
						ix := ox*s - wx.pad + kx
						if ix < 0 || ix >= x.w {
							continue
						}
						mulAdd(acc, x.at(iy, ix), dw.filters[(ky*dw.kw+kx)*dw.c:(ky*dw.kw+kx+1)*dw.c])
					}
				}
				activate(acc, act)
			}
		}
	})
	return o
}

// maxPool takes the maximum over k x k windows; padded positions never win,
// as in TF.
func maxPool(x fmap, k, s int, wy, wx window) fmap {
	o := newFmap(wy.out, wx.out, x.c)
	parallelRows(wy.out, func(lo, hi int) {
		for oy := lo; oy < hi; oy++ {
			for ox := 0; ox < wx.out; ox++ {
				acc := o.at(oy, ox)
				for c := range acc {
					acc[c] = float32(math.Inf(-1))
				}
				for ky := range k {
					iy := oy*s - wy.pad + ky
					if iy < 0 || iy >= x.h {
						continue
					}
					for kx := range k {
						ix := ox*s - wx.pad + kx
						if ix < 0 || ix >= x.w {
							continue
						}
						maxInto(acc, x.at(iy, ix))
					}
				}
			}
		}
	})
	return o
}

// avgPool2 is a 2x2, stride 2, "valid" average pool.
func avgPool2(x fmap) fmap {
	o := newFmap(x.h/2, x.w/2, x.c)
	for oy := range o.h {
		for ox := range o.w {
			acc := o.at(oy, ox)
			for _, p := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
				for c, v := range x.at(2*oy+p[0], 2*ox+p[1]) {
					acc[c] += v
				}
			}
			for c := range acc {
				acc[c] *= 0.25
			}
		}
	}
	return o
}

// mulAdd does y += a*b elementwise.
//
//go:norace
func mulAdd(y, a, b []float32) {
	a, b = a[:len(y)], b[:len(y)]
	for i := range y {
		y[i] += a[i] * b[i]
	}
}

// maxInto does y = max(y, x) elementwise.
//
//go:norace
func maxInto(y, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] = max(y[i], v)
	}
}
