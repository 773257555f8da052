package nn

import (
	"errors"
	"fmt"
)

// Option configures a layer at construction.
type Option func(*options) error

type options struct {
	strideH, strideW int
	padH, padW       int
	prelu            []float32
}

// WithStride sets a Conv2D's vertical and horizontal stride (default 1, 1).
func WithStride(h, w int) Option {
	return func(o *options) error {
		if h < 1 || w < 1 {
			return fmt.Errorf("stride must be at least 1, got %d x %d", h, w)
		}
		o.strideH, o.strideW = h, w
		return nil
	}
}

// WithPadding sets a Conv2D's zero padding on each side (default 0, 0).
func WithPadding(h, w int) Option {
	return func(o *options) error {
		if h < 0 || w < 0 {
			return fmt.Errorf("padding must not be negative, got %d x %d", h, w)
		}
		o.padH, o.padW = h, w
		return nil
	}
}

// WithPReLU fuses a per-channel PReLU (y = x if x >= 0 else a[c]*x) into the
// layer's output. Fusing saves a full pass over the output in memory, which
// for a large image pyramid level costs as much as a cheap convolution.
func WithPReLU(slopes []float32) Option {
	return func(o *options) error {
		o.prelu = slopes
		return nil
	}
}

func applyOptions(opts []Option) (options, error) {
	o := options{strideH: 1, strideW: 1}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Conv2D is a 2-D cross-correlation with PyTorch's weight layout
// [out, in, kh, kw], optional bias and optional fused PReLU.
type Conv2D struct {
	OutC, InC, KH, KW int
	opt               options
	bias              []float32
	packed            []float32 // weights as packed A (OutC x InC*KH*KW)
}

// NewConv2D builds a convolution from PyTorch-layout weights of shape
// [out, in, kh, kw] and a bias of length out (or nil).
func NewConv2D(weight []float32, shape []int, bias []float32, opts ...Option) (*Conv2D, error) {
	if len(shape) != 4 {
		return nil, fmt.Errorf("nn.NewConv2D: weight shape %v must be [out, in, kh, kw]", shape)
	}
	for _, d := range shape {
		if d < 1 {
			return nil, fmt.Errorf("nn.NewConv2D: weight shape %v has an empty dimension", shape)
		}
	}
	c := &Conv2D{OutC: shape[0], InC: shape[1], KH: shape[2], KW: shape[3]}
	k := c.InC * c.KH * c.KW
	if len(weight) != c.OutC*k {
		return nil, fmt.Errorf("nn.NewConv2D: weight shape %v needs %d values, got %d", shape, c.OutC*k, len(weight))
	}
	if bias != nil && len(bias) != c.OutC {
		return nil, fmt.Errorf("nn.NewConv2D: bias has %d values, want %d (one per output channel)", len(bias), c.OutC)
	}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("nn.NewConv2D: %v", err)
	}
	if o.prelu != nil && len(o.prelu) != c.OutC {
		return nil, fmt.Errorf("nn.NewConv2D: PReLU has %d slopes, want %d (one per output channel)", len(o.prelu), c.OutC)
	}
	c.opt = o
	c.bias = bias
	c.packed = make([]float32, packedALen(c.OutC, k))
	packA(c.packed, weight, c.OutC, k, k)
	return c, nil
}

// OutputSize is the spatial size of the output for an h x w input.
func (c *Conv2D) OutputSize(h, w int) (oh, ow int) {
	oh = (h+2*c.opt.padH-c.KH)/c.opt.strideH + 1
	ow = (w+2*c.opt.padW-c.KW)/c.opt.strideW + 1
	return oh, ow
}

// convTile is how many output positions one task packs and multiplies. The
// packed panel is at most InC*KH*KW*convTile floats (576 KB for a 3x3 conv
// over 64 channels), which stays in the 2 MB L2 next to the weights.
const convTile = 256

// Forward convolves the NCHW tensor x. It panics if x does not have InC
// channels or is smaller than the kernel.
func (c *Conv2D) Forward(x *Tensor) *Tensor {
	n, ch, h, w := x.dims4("Conv2D")
	if ch != c.InC {
		panic(fmt.Sprintf("nn.Conv2D: input has %d channels, the layer expects %d", ch, c.InC))
	}
	oh, ow := c.OutputSize(h, w)
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("nn.Conv2D: input %dx%d is smaller than the %dx%d kernel", h, w, c.KH, c.KW))
	}
	out := New(n, c.OutC, oh, ow)
	positions := oh * ow
	tilesPerImage := (positions + convTile - 1) / convTile
	k := c.InC * c.KH * c.KW
	scratch := make([][]float32, min(Workers(), n*tilesPerImage))
	offsets := make([][]int, len(scratch))
	parallel(n*tilesPerImage, func(wk, t int) {
		if scratch[wk] == nil {
			scratch[wk] = make([]float32, packedBLen(convTile, k))
			offsets[wk] = make([]int, convTile+nr)
		}
		img := t / tilesPerImage
		p0 := (t % tilesPerImage) * convTile
		p1 := min(p0+convTile, positions)
		bp := scratch[wk]
		c.im2col(bp, x.Data[img*ch*h*w:(img+1)*ch*h*w], h, w, ow, p0, p1, offsets[wk])
		dst := out.Data[img*c.OutC*positions:]
		gemm(c.OutC, p1-p0, k, c.packed, bp, dst[p0:], positions)
		c.epilogue(dst, positions, p0, p1)
	})
	return out
}

// im2col packs the receptive fields of output positions [p0, p1) of one
// image (flattened row-major over the output) as B micro-panels: column j is
// position p0+j, row kk is (channel, ky, kx) in weight order.
func (c *Conv2D) im2col(bp, img []float32, h, w, ow, p0, p1 int, offs []int) {
	k := c.InC * c.KH * c.KW
	if c.opt.padH != 0 || c.opt.padW != 0 {
		c.im2colPadded(bp, img, h, w, ow, p0, p1)
		return
	}
	// Without padding every tap is inside the image, so the packing is a pure
	// gather: precompute each position's top-left input offset once, then
	// for every tap copy the tile's values pairwise into the nr-wide panels.
	n := p1 - p0
	offs = offs[:n+n%nr]
	for j := range n {
		p := p0 + j
		offs[j] = (p/ow)*c.opt.strideH*w + (p%ow)*c.opt.strideW
	}
	pairs := n / nr
	kk := 0
	for ic := range c.InC {
		for ky := range c.KH {
			for kx := range c.KW {
				tap := ic*h*w + ky*w + kx
				dst := bp[kk*nr:]
				for q := range pairs {
					o := q * k * nr
					dst[o] = img[offs[2*q]+tap]
					dst[o+1] = img[offs[2*q+1]+tap]
				}
				if n%nr != 0 {
					o := pairs * k * nr
					dst[o] = img[offs[n-1]+tap]
					dst[o+1] = 0
				}
				kk++
			}
		}
	}
}

// im2colPadded is im2col for padded convolutions, testing every tap.
func (c *Conv2D) im2colPadded(bp, img []float32, h, w, ow, p0, p1 int) {
	k := c.InC * c.KH * c.KW
	sh, sw, ph, pw := c.opt.strideH, c.opt.strideW, c.opt.padH, c.opt.padW
	plane := h * w
	for j0 := p0; j0 < p1; j0 += nr {
		panel := bp[(j0-p0)*k : (j0-p0+nr)*k]
		for q := range nr {
			p := j0 + q
			kk := q
			if p >= p1 {
				for range k {
					panel[kk] = 0
					kk += nr
				}
				continue
			}
			y0 := (p/ow)*sh - ph
			x0 := (p%ow)*sw - pw
			for ic := range c.InC {
				for ky := range c.KH {
					y := y0 + ky
					for kx := range c.KW {
						xx := x0 + kx
						v := float32(0)
						if y >= 0 && y < h && xx >= 0 && xx < w {
							v = img[ic*plane+y*w+xx]
						}
						panel[kk] = v
						kk += nr
					}
				}
			}
		}
	}
}

// epilogue adds the bias and applies the fused PReLU to positions [p0, p1)
// of every output channel, while they are still in cache.
func (c *Conv2D) epilogue(dst []float32, positions, p0, p1 int) {
	for oc := range c.OutC {
		row := dst[oc*positions+p0 : oc*positions+p1]
		var b float32
		if c.bias != nil {
			b = c.bias[oc]
		}
		if c.opt.prelu == nil {
			for i := range row {
				row[i] += b
			}
			continue
		}
		a := c.opt.prelu[oc]
		for i, v := range row {
			row[i] = prelu(v+b, a)
		}
	}
}

// Dense is a fully connected layer y = W x + b with PyTorch's weight layout
// [out, in], optional bias and optional fused PReLU.
type Dense struct {
	Out, In int
	bias    []float32
	prelu   []float32
	packed  []float32 // W transposed, as packed B (In x Out)
}

// NewDense builds a dense layer from weights of shape [out, in] and a bias of
// length out (or nil). Only WithPReLU applies.
func NewDense(weight []float32, out, in int, bias []float32, opts ...Option) (*Dense, error) {
	if out < 1 || in < 1 || len(weight) != out*in {
		return nil, fmt.Errorf("nn.NewDense: weight has %d values, want out*in = %d*%d", len(weight), out, in)
	}
	if bias != nil && len(bias) != out {
		return nil, fmt.Errorf("nn.NewDense: bias has %d values, want %d", len(bias), out)
	}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("nn.NewDense: %v", err)
	}
	if o.strideH != 1 || o.strideW != 1 || o.padH != 0 || o.padW != 0 {
		return nil, errors.New("nn.NewDense: stride and padding apply only to Conv2D")
	}
	if o.prelu != nil && len(o.prelu) != out {
		return nil, fmt.Errorf("nn.NewDense: PReLU has %d slopes, want %d", len(o.prelu), out)
	}
	d := &Dense{Out: out, In: in, bias: bias, prelu: o.prelu}
	d.packed = make([]float32, packedBLen(out, in))
	packBT(d.packed, weight, out, in, in)
	return d, nil
}

// denseRows is how many batch rows one task handles.
const denseRows = 32

// Forward maps x of shape [N, In] (or any shape whose trailing dimensions
// multiply to In) to [N, Out].
func (d *Dense) Forward(x *Tensor) *Tensor {
	if len(x.Shape) == 0 || len(x.Data)%d.In != 0 || x.Shape[0]*d.In != len(x.Data) {
		panic(fmt.Sprintf("nn.Dense: input shape %v does not flatten to [N, %d]", x.Shape, d.In))
	}
	n := x.Shape[0]
	out := New(n, d.Out)
	tasks := (n + denseRows - 1) / denseRows
	scratch := make([][]float32, min(Workers(), tasks))
	parallel(tasks, func(wk, t int) {
		if scratch[wk] == nil {
			scratch[wk] = make([]float32, packedALen(denseRows, d.In))
		}
		r0 := t * denseRows
		r1 := min(r0+denseRows, n)
		ap := scratch[wk]
		packA(ap, x.Data[r0*d.In:], r1-r0, d.In, d.In)
		y := out.Data[r0*d.Out : r1*d.Out]
		gemm(r1-r0, d.Out, d.In, ap, d.packed, y, d.Out)
		for i := range y {
			o := i % d.Out
			v := y[i]
			if d.bias != nil {
				v += d.bias[o]
			}
			if d.prelu != nil && v < 0 {
				v *= d.prelu[o]
			}
			y[i] = v
		}
	})
	return out
}
