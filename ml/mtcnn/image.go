package mtcnn

import (
	"image"
	"image/color"

	"github.com/face0/face0/ml/nn"
)

// rgbImage is the input as three 8-bit planes plus their integral images.
//
// Every network input (13 pyramid levels and about a thousand crops for a
// 1920x1280 photo) is an area resize of this image, i.e. means over
// rectangles. The reference sums each rectangle in float32; for 8-bit pixels
// every such sum is an integer below 2^24 and therefore exact, so the same
// integer read off an integral image in O(1) gives bit-identical results.
type rgbImage struct {
	w, h int
	pix  [3][]uint8
	// integral[c][y*(w+1)+x] is the sum of pix[c] over rows < y and columns
	// < x. It is kept modulo 2^32: differences of four entries are still
	// exact for any rectangle whose true sum is below 2^32.
	integral [3][]uint32
}

// newRGBImage converts img to planes and integrates them.
//
// Colours follow Go's own conversion, color.YCbCr's RGBA() >> 8 (equal to
// color.YCbCrToRGB and to what image/draw produces): that is the decode the
// golden go_image_jpeg outputs were computed on. JPEG photos decode to
// *image.YCbCr, which gets a fast path; other types go through At().RGBA(),
// which for images with transparency yields alpha-premultiplied colours.
func newRGBImage(img image.Image) *rgbImage {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	m := &rgbImage{w: w, h: h}
	for c := range m.pix {
		m.pix[c] = make([]uint8, w*h)
	}
	R, G, B := m.pix[0], m.pix[1], m.pix[2]
	switch src := img.(type) {
	case *image.YCbCr:
		nn.ParallelFor(h, func(_, y int) {
			yi := src.YOffset(b.Min.X, b.Min.Y+y)
			for x := range w {
				ci := src.COffset(b.Min.X+x, b.Min.Y+y)
				i := y*w + x
				R[i], G[i], B[i] = color.YCbCrToRGB(src.Y[yi+x], src.Cb[ci], src.Cr[ci])
			}
		})
	case *image.RGBA:
		nn.ParallelFor(h, func(_, y int) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				i := y*w + x
				R[i], G[i], B[i] = row[4*x], row[4*x+1], row[4*x+2]
			}
		})
	default:
		nn.ParallelFor(h, func(_, y int) {
			for x := range w {
				r, g, bb, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				i := y*w + x
				R[i], G[i], B[i] = uint8(r>>8), uint8(g>>8), uint8(bb>>8)
			}
		})
	}
	nn.ParallelFor(3, func(_, c int) {
		ii := make([]uint32, (w+1)*(h+1))
		p := m.pix[c]
		for y := range h {
			var run uint32
			above := ii[y*(w+1) : (y+1)*(w+1)]
			cur := ii[(y+1)*(w+1) : (y+2)*(w+1)]
			for x, v := range p[y*w : (y+1)*w] {
				run += uint32(v)
				cur[x+1] = above[x+1] + run
			}
		}
		m.integral[c] = ii
	})
	return m
}

// maxExactWindow is the largest window (in pixels) whose float32 sum of
// 8-bit values is always exact: 255 * 65793 < 2^24. Larger windows (only at
// extreme downscaling) are summed in float32 in the reference's order.
const maxExactWindow = 65793

// resizeInto area-resizes the rectangle [x0, x1) x [y0, y1) of the image to
// oh x ow, normalises it to (v - 127.5) / 128 as the networks expect, and
// writes it to dst as 3 planes. Rows [r0, r1) of the output (counted over
// all three planes) are produced, so callers can split the work.
func (m *rgbImage) resizeInto(dst []float32, x0, y0, x1, y1, oh, ow, r0, r1 int) {
	cw, ch := x1-x0, y1-y0
	stride := m.w + 1
	var xs [2][]int
	xs[0], xs[1] = make([]int, ow), make([]int, ow)
	for j := range ow {
		xs[0][j], xs[1][j] = nn.AreaWindow(j, ow, cw)
	}
	for r := r0; r < r1; r++ {
		c, i := r/oh, r%oh
		ys, ye := nn.AreaWindow(i, oh, ch)
		kh := float32(ye - ys)
		ii := m.integral[c]
		top := ii[(y0+ys)*stride+x0:]
		bot := ii[(y0+ye)*stride+x0:]
		drow := dst[r*ow : (r+1)*ow]
		for j := range drow {
			xs0, xs1 := xs[0][j], xs[1][j]
			var sum float32
			if (ye-ys)*(xs1-xs0) <= maxExactWindow {
				sum = float32(bot[xs1] - bot[xs0] - top[xs1] + top[xs0])
			} else {
				sum = m.floatSum(c, x0+xs0, y0+ys, x0+xs1, y0+ye)
			}
			drow[j] = (sum/kh/float32(xs1-xs0) - 127.5) * 0.0078125
		}
	}
}

// floatSum adds a rectangle in float32, row by row, as the reference does.
func (m *rgbImage) floatSum(c, x0, y0, x1, y1 int) float32 {
	var s float32
	for y := y0; y < y1; y++ {
		for _, v := range m.pix[c][y*m.w+x0 : y*m.w+x1] {
			s += float32(v)
		}
	}
	return s
}

// level returns the whole image area-resized to oh x ow and normalised, as
// a [1, 3, oh, ow] tensor.
func (m *rgbImage) level(oh, ow int) *nn.Tensor {
	t := nn.New(1, 3, oh, ow)
	const rows = 32
	rowsTotal := 3 * oh
	nn.ParallelFor((rowsTotal+rows-1)/rows, func(_, k int) {
		m.resizeInto(t.Data, 0, 0, m.w, m.h, oh, ow, k*rows, min((k+1)*rows, rowsTotal))
	})
	return t
}
