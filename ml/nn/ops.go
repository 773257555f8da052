package nn

import (
	"fmt"
	"math"
)

// PReLU applies y = x if x >= 0 else a[c]*x in place, with one slope per
// channel (dimension 1 of an [N, C, ...] tensor).
func PReLU(x *Tensor, slopes []float32) {
	if len(x.Shape) < 2 || x.Shape[1] != len(slopes) {
		panic(fmt.Sprintf("nn.PReLU: input shape %v needs %d slopes at dimension 1", x.Shape, len(slopes)))
	}
	inner := numel(x.Shape[2:])
	c := x.Shape[1]
	for i := 0; i < len(x.Data); i += inner {
		a := slopes[(i/inner)%c]
		row := x.Data[i : i+inner]
		for j, v := range row {
			row[j] = prelu(v, a)
		}
	}
}

// PoolOutputSize is PyTorch's pooled length for n inputs, window k, stride s
// and no padding. With ceilMode the last window may hang over the edge, but a
// window that would start past the input is dropped (PyTorch's rule).
func PoolOutputSize(n, k, s int, ceilMode bool) int {
	if n < k {
		return 0
	}
	num := n - k
	if ceilMode {
		num += s - 1
	}
	out := num/s + 1
	if ceilMode && (out-1)*s >= n {
		out--
	}
	return out
}

// MaxPool2D takes the maximum over k x k windows with stride s and no
// padding. With ceilMode a window hanging over the edge takes the maximum of
// its part inside the input (the MTCNN networks rely on this).
func MaxPool2D(x *Tensor, k, s int, ceilMode bool) *Tensor {
	n, c, h, w := x.dims4("MaxPool2D")
	oh, ow := PoolOutputSize(h, k, s, ceilMode), PoolOutputSize(w, k, s, ceilMode)
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("nn.MaxPool2D: input %dx%d is smaller than the %dx%d window", h, w, k, k))
	}
	out := New(n, c, oh, ow)
	parallel(n*c, func(_, p int) {
		src := x.Data[p*h*w : (p+1)*h*w]
		dst := out.Data[p*oh*ow : (p+1)*oh*ow]
		// Separable: the column maximum over the window's rows first, then
		// the maximum over each window's columns of that row. Go's max
		// propagates NaN, as PyTorch does.
		colMax := make([]float32, w)
		for oy := range oh {
			y0 := oy * s
			y1 := min(y0+k, h)
			copy(colMax, src[y0*w:(y0+1)*w])
			for y := y0 + 1; y < y1; y++ {
				for i, v := range src[y*w : (y+1)*w] {
					colMax[i] = max(colMax[i], v)
				}
			}
			drow := dst[oy*ow : (oy+1)*ow]
			for ox := range drow {
				x0 := ox * s
				win := colMax[x0:min(x0+k, w)]
				m := win[0]
				for _, v := range win[1:] {
					m = max(m, v)
				}
				drow[ox] = m
			}
		}
	})
	return out
}

// Softmax normalises over dimension 1 (channels of NCHW, classes of [N, C])
// and returns a new tensor. Each position is computed in float64 and rounded
// once, so the result is within half an ulp of the exact softmax.
func Softmax(x *Tensor) *Tensor {
	if len(x.Shape) < 2 {
		panic(fmt.Sprintf("nn.Softmax: input shape %v has no dimension 1", x.Shape))
	}
	n, c := x.Shape[0], x.Shape[1]
	inner := numel(x.Shape[2:])
	out := &Tensor{Shape: append([]int(nil), x.Shape...), Data: make([]float32, len(x.Data))}
	e := make([]float64, c)
	for b := range n {
		base := b * c * inner
		for p := range inner {
			m := math.Inf(-1)
			for ch := range c {
				m = math.Max(m, float64(x.Data[base+ch*inner+p]))
			}
			sum := 0.0
			for ch := range c {
				e[ch] = math.Exp(float64(x.Data[base+ch*inner+p]) - m)
				sum += e[ch]
			}
			for ch := range c {
				out.Data[base+ch*inner+p] = float32(e[ch] / sum)
			}
		}
	}
	return out
}

// AreaWindow is PyTorch's adaptive-pooling window for output index i of out
// over in inputs: [floor(i*in/out), ceil((i+1)*in/out)). The quotients are
// computed in float32 exactly as ATen does ((float)(a*b)/c), so that windows
// match even where the float quotient rounds across an integer.
func AreaWindow(i, out, in int) (start, end int) {
	start = int(math.Floor(float64(float32(i*in) / float32(out))))
	end = int(math.Ceil(float64(float32((i+1)*in) / float32(out))))
	return start, end
}

// AreaResize resizes an NCHW tensor to oh x ow the way PyTorch's
// interpolate(mode="area") does, i.e. adaptive average pooling: output pixel
// i averages input rows floor(i*H/oh) .. ceil((i+1)*H/oh)-1 (and likewise
// columns). It both shrinks and enlarges. Sums run in float32 in row-major
// window order and are divided by the window height and then its width, as
// ATen does, so integer-valued images give bit-identical results.
func AreaResize(x *Tensor, oh, ow int) *Tensor {
	n, c, h, w := x.dims4("AreaResize")
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("nn.AreaResize: output size %dx%d must be positive", oh, ow))
	}
	out := New(n, c, oh, ow)
	AreaResizeInto(out.Data, x.Data, n*c, h, w, oh, ow)
	return out
}

// AreaResizeInto is AreaResize on raw data: planes consecutive h x w planes
// of src become oh x ow planes in dst, so callers can resize into a slice of
// a larger batch tensor without an intermediate allocation.
func AreaResizeInto(dst, src []float32, planes, h, w, oh, ow int) {
	xs := make([][2]int, ow)
	for j := range xs {
		xs[j][0], xs[j][1] = AreaWindow(j, ow, w)
	}
	rows := planes * oh
	const chunk = 16 // output rows per task
	tasks := (rows + chunk - 1) / chunk
	work := func(_, t int) {
		for r := t * chunk; r < min((t+1)*chunk, rows); r++ {
			p, i := r/oh, r%oh
			y0, y1 := AreaWindow(i, oh, h)
			kh := float32(y1 - y0)
			plane := src[p*h*w : (p+1)*h*w]
			drow := dst[r*ow : (r+1)*ow]
			for j, xr := range xs {
				var sum float32
				for y := y0; y < y1; y++ {
					for _, v := range plane[y*w+xr[0] : y*w+xr[1]] {
						sum += v
					}
				}
				drow[j] = sum / kh / float32(xr[1]-xr[0])
			}
		}
	}
	// Small inputs (network crops, usually resized by the hundred inside a
	// parallel loop already) are not worth a goroutine each.
	if planes*h*w < 1<<16 {
		for t := range tasks {
			work(0, t)
		}
		return
	}
	parallel(tasks, work)
}

// prelu returns v if v >= 0 else a*v, without a branch: activations are
// negative about half the time in no predictable pattern, and the branch
// mispredictions cost more than the convolution's own bookkeeping. The sign
// bit of v selects between the bit patterns of 1 and a.
func prelu(v, a float32) float32 {
	const one = 0x3f800000 // math.Float32bits(1)
	neg := uint32(int32(math.Float32bits(v)) >> 31)
	return v * math.Float32frombits(one^((one^math.Float32bits(a))&neg))
}
