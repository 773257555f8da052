package faceapi

import (
	"image"
	"image/color"
	"math"
)

// squareInput builds a network input the way face-api's NetInput.toBatchTensor
// does for an image tensor: pad the shorter side with black to a square, then
// resize it to size x size with tf.image.resizeBilinear (alignCorners and
// halfPixelCenters false). Centred (the recogniser), the padding is split
// with round(diff/2) after the image and the rest before; otherwise (the
// detectors) it all goes after, so box coordinates keep their origin. Values
// are RGB in [0, 255].
//
// The padded square is never materialised: only the pixels bilinear sampling
// reads are converted, which for a 1920-pixel photo and a 416 input is about
// a tenth of them.
func squareInput(img image.Image, size int, centre bool) fmap {
	px := pixelReader(img)
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	n := max(w, h)
	offX, offY := 0, 0
	if centre {
		// math.Round rounds half away from zero; for the positive values here
		// it matches JavaScript's Math.round.
		before := n - min(w, h) - int(math.Round(float64(n-min(w, h))*0.5))
		if w < h {
			offX = before
		} else {
			offY = before
		}
	}
	// padded returns pixel (x, y) of the padded square.
	padded := func(x, y int) [3]float32 {
		x, y = x-offX, y-offY
		if x < 0 || y < 0 || x >= w || y >= h {
			return [3]float32{}
		}
		return px(b.Min.X+x, b.Min.Y+y)
	}

	o := newFmap(size, size, 3)
	// Source coordinate i*n/size, computed in float32 like TF.js.
	scale := float32(n) / float32(size)
	type tap struct {
		i0, i1 int
		d      float32
	}
	taps := make([]tap, size)
	for i := range taps {
		f := float32(i) * scale
		i0 := int(f)
		taps[i] = tap{i0, min(i0+1, n-1), f - float32(i0)}
	}
	parallelRows(size, func(lo, hi int) {
		for oy := lo; oy < hi; oy++ {
			ty := taps[oy]
			for ox := range size {
				tx := taps[ox]
				out := o.at(oy, ox)
				if n == size {
					p := padded(ox, oy)
					copy(out, p[:])
					continue
				}
				tl, tr := padded(tx.i0, ty.i0), padded(tx.i1, ty.i0)
				bl, br := padded(tx.i0, ty.i1), padded(tx.i1, ty.i1)
				for c := range 3 {
					top := tl[c] + (tr[c]-tl[c])*tx.d
					bot := bl[c] + (br[c]-bl[c])*tx.d
					out[c] = top + (bot-top)*ty.d
				}
			}
		}
	})
	return o
}

// pixelReader returns a function giving the RGB values, in [0, 255], of a
// pixel of img. Alpha is dropped, as face-api's tensor inputs carry none.
// The usual decoder outputs take fast paths around the color.Color
// interface.
func pixelReader(img image.Image) func(x, y int) [3]float32 {
	switch src := img.(type) {
	case *image.YCbCr:
		return func(x, y int) [3]float32 {
			yi, ci := src.YOffset(x, y), src.COffset(x, y)
			r, g, b := color.YCbCrToRGB(src.Y[yi], src.Cb[ci], src.Cr[ci])
			return [3]float32{float32(r), float32(g), float32(b)}
		}
	case *image.RGBA:
		return func(x, y int) [3]float32 {
			p := src.Pix[src.PixOffset(x, y):]
			if p[3] != 255 {
				return nrgb(src.At(x, y)) // premultiplied: undo it
			}
			return [3]float32{float32(p[0]), float32(p[1]), float32(p[2])}
		}
	case *image.NRGBA:
		return func(x, y int) [3]float32 {
			p := src.Pix[src.PixOffset(x, y):]
			return [3]float32{float32(p[0]), float32(p[1]), float32(p[2])}
		}
	case *image.Gray:
		return func(x, y int) [3]float32 {
			v := float32(src.Pix[src.PixOffset(x, y)])
			return [3]float32{v, v, v}
		}
	default:
		return func(x, y int) [3]float32 { return nrgb(img.At(x, y)) }
	}
}

// nrgb returns the non-premultiplied RGB values of c, what a browser canvas
// hands face-api.
func nrgb(c color.Color) [3]float32 {
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]float32{float32(n.R), float32(n.G), float32(n.B)}
}
