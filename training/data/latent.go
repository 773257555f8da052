package data

import (
	"fmt"
	"image"
	"image/draw"
	"math"

	xdraw "golang.org/x/image/draw"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
)

// Latent is the tiny model's lossless "VAE": the RGB image, scaled to
// [-1, 1], rearranged space-to-depth by Factor. A Size×Size image becomes a
// [3·Factor², Size/Factor, Size/Factor] latent; channel (by·Factor+bx)·3+c
// at (y, x) holds colour c of pixel (y·Factor+by, x·Factor+bx). That is
// ONNX's DepthToSpace in DCR mode, so the decoder is one exact op, and the
// first three channels are a subsampled copy of the image (which the
// sampler's cheap latent preview shows).
type Latent struct {
	Size   int // image side in pixels
	Factor int // space-to-depth block size
}

// DefaultLatent is 32×32 images as 48 channels of 8×8: the trainer's 8×8
// latent speed (training/README.md) at the tiny model's resolution.
func DefaultLatent() Latent { return Latent{Size: 32, Factor: 4} }

// Channels is 3·Factor².
func (l Latent) Channels() int { return 3 * l.Factor * l.Factor }

// Side is the latent's side, Size/Factor.
func (l Latent) Side() int { return l.Size / l.Factor }

// Len is the number of values of one latent.
func (l Latent) Len() int { return l.Channels() * l.Side() * l.Side() }

// Validate checks that the factor divides the size.
func (l Latent) Validate() error {
	if l.Size <= 0 || l.Factor <= 0 || l.Size%l.Factor != 0 {
		return fmt.Errorf("data: latent: image size %d must be a positive multiple of the factor %d", l.Size, l.Factor)
	}
	return nil
}

// Fit turns any image into the Size×Size RGB square the latent encodes:
// the largest centred square is cut out (no distortion) and resized with a
// Catmull-Rom filter (which widens for shrinking, so it averages rather
// than aliases). Transparent pixels are composited on black.
func (l Latent) Fit(img image.Image) *image.NRGBA {
	b := img.Bounds()
	side := min(b.Dx(), b.Dy())
	sq := image.Rect(b.Min.X+(b.Dx()-side)/2, b.Min.Y+(b.Dy()-side)/2, 0, 0)
	sq.Max = sq.Min.Add(image.Pt(side, side))
	dst := image.NewNRGBA(image.Rect(0, 0, l.Size, l.Size))
	draw.Draw(dst, dst.Bounds(), image.Black, image.Point{}, draw.Src)
	if side == l.Size {
		draw.Draw(dst, dst.Bounds(), img, sq.Min, draw.Over)
		return dst
	}
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), img, sq, draw.Over, nil)
	return dst
}

// Encode is the latent of img (fitted to Size×Size first), unscaled:
// values in [-1, 1].
func (l Latent) Encode(img image.Image) []float32 {
	sq := l.Fit(img)
	f, s := l.Factor, l.Side()
	out := make([]float32, l.Len())
	plane := s * s
	for by := range f {
		for bx := range f {
			for c := range 3 {
				ch := (by*f+bx)*3 + c
				for y := range s {
					for x := range s {
						px := sq.Pix[(y*f+by)*sq.Stride+(x*f+bx)*4+c]
						out[ch*plane+y*s+x] = float32(px)/127.5 - 1
					}
				}
			}
		}
	}
	return out
}

// Decode is Encode's inverse on one unscaled latent (what the exported
// vae_decoder computes), as an image; values are clamped to [-1, 1].
func (l Latent) Decode(lat []float32) *image.NRGBA {
	f, s := l.Factor, l.Side()
	img := image.NewNRGBA(image.Rect(0, 0, l.Size, l.Size))
	plane := s * s
	for by := range f {
		for bx := range f {
			for c := range 3 {
				ch := (by*f+bx)*3 + c
				for y := range s {
					for x := range s {
						v := (float64(lat[ch*plane+y*s+x]) + 1) * 127.5
						img.Pix[(y*f+by)*img.Stride+(x*f+bx)*4+c] = uint8(math.Round(math.Max(0, math.Min(255, v))))
					}
				}
			}
		}
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	return img
}

// Decoder is the exact inverse as an ONNX graph with SD's VAE decoder
// interface: latent_sample float32[batch, 3·Factor², height, width] →
// sample float32[batch, 3, Factor·height, Factor·width] in [-1, 1] (one
// DepthToSpace, DCR mode). Like SD's, it does not divide by the latent
// scale: the Decode node does that.
func (l Latent) Decoder() (*onnx.Graph, error) {
	g := onnx.NewGraph("vae_decoder")
	x := g.Input(sdmodel.InLatent, onnx.Float, "batch", l.Channels(), "height", "width")
	y := g.Node("DepthToSpace", []onnx.Value{x}, onnx.AttrInt("blocksize", int64(l.Factor)), onnx.AttrString("mode", "DCR"))
	g.Output(sdmodel.OutImage, y, "batch", 3, "image_height", "image_width")
	return g, g.Err()
}
