// Package crop is the geometry of the Face0 face crop: expanding a detector's
// box by the paper's margins, squaring it, and cutting it out of the photo at a
// fixed size. It knows nothing about detectors or nodes, so the rule can be
// tested on its own.
//
// The rule (FACE0-PAPER.md section 2.3): the MTCNN box is expanded by 10 px
// left and right, 33 px top and 15 px bottom, then resized to 160x160
// preserving the aspect ratio. The paper gives the margins in pixels without
// saying how large its faces were; pixels that fit a 160 px face would be lost
// on a 600 px face and swamp a 40 px one. So by default the margins scale with
// the face: a box whose size s (the geometric mean of its width and height,
// sqrt(w*h)) is RefSize = 160 gets exactly 10/33/15 px, and any other box gets
// them multiplied by s/160. The geometric mean keeps the scale independent of
// the box's aspect ratio, which differs between detectors (SSD boxes are
// taller than MTCNN's). Absolute scaling reproduces the paper's pixels as
// written.
//
// To keep the aspect ratio, the expanded box is grown along its shorter side,
// symmetrically, into the smallest square that holds it, and that square is
// resized to the output size: the extra side room is more of the photo rather
// than padding bars. Only the parts of the square that fall outside the photo
// are filled, with black (what face-api and facenet pad with).
package crop

import (
	"fmt"
	"image"
	"image/draw"
	"math"

	xdraw "golang.org/x/image/draw"
)

// Box is an axis-aligned rectangle in image pixels with fractional corners:
// (X1, Y1) top left, (X2, Y2) bottom right, X2 > X1 and Y2 > Y1 when valid.
type Box struct {
	X1, Y1, X2, Y2 float64
}

// W is the box's width.
func (b Box) W() float64 { return b.X2 - b.X1 }

// H is the box's height.
func (b Box) H() float64 { return b.Y2 - b.Y1 }

// Area is width times height, 0 for an invalid box.
func (b Box) Area() float64 {
	if !b.Valid() {
		return 0
	}
	return b.W() * b.H()
}

// Centre is the box's centre point.
func (b Box) Centre() (x, y float64) { return (b.X1 + b.X2) / 2, (b.Y1 + b.Y2) / 2 }

// Valid reports whether the box has positive, finite width and height.
func (b Box) Valid() bool {
	for _, v := range [...]float64{b.X1, b.Y1, b.X2, b.Y2} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return b.X2 > b.X1 && b.Y2 > b.Y1
}

// Size is the geometric mean of width and height: the side of the square of
// the same area. It is what the margins scale with.
func (b Box) Size() float64 { return math.Sqrt(b.Area()) }

// IoU is the intersection over union of two boxes, 0 when disjoint.
func (b Box) IoU(o Box) float64 {
	w := math.Min(b.X2, o.X2) - math.Max(b.X1, o.X1)
	h := math.Min(b.Y2, o.Y2) - math.Max(b.Y1, o.Y1)
	if w <= 0 || h <= 0 {
		return 0
	}
	inter := w * h
	return inter / (b.Area() + o.Area() - inter)
}

// Shift moves the box by dx, dy pixels.
func (b Box) Shift(dx, dy float64) Box { return Box{b.X1 + dx, b.Y1 + dy, b.X2 + dx, b.Y2 + dy} }

// Scale multiplies every coordinate by s (the box in a photo resized by s).
func (b Box) Scale(s float64) Box { return Box{b.X1 * s, b.Y1 * s, b.X2 * s, b.Y2 * s} }

// FlipX mirrors the box in a photo of the given width.
func (b Box) FlipX(width float64) Box { return Box{width - b.X2, b.Y1, width - b.X1, b.Y2} }

// Margins are the Face0 expansion, in pixels for a face of RefSize.
type Margins struct {
	Left, Right, Top, Bottom float64
}

// Paper is the expansion the Face0 paper uses with MTCNN boxes.
var Paper = Margins{Left: 10, Right: 10, Top: 33, Bottom: 15}

// RefSize is the face size (see Box.Size) at which scaled margins equal the
// paper's pixels.
const RefSize = 160

// OutputSize is the side of the paper's crop (facenet's input).
const OutputSize = 160

// Scaling says how margins relate to the face size.
type Scaling int

const (
	// Proportional multiplies the margins by Box.Size()/RefSize.
	Proportional Scaling = iota
	// Absolute adds the margins as pixels, whatever the face size: the
	// paper's numbers taken literally.
	Absolute
)

// Expand grows b by m. With Proportional scaling the margins are multiplied
// by b.Size()/RefSize.
func Expand(b Box, m Margins, s Scaling) Box {
	k := 1.0
	if s == Proportional {
		k = b.Size() / RefSize
	}
	return Box{b.X1 - k*m.Left, b.Y1 - k*m.Top, b.X2 + k*m.Right, b.Y2 + k*m.Bottom}
}

// Square returns the smallest square with b's centre that contains b.
func Square(b Box) Box {
	cx, cy := b.Centre()
	h := math.Max(b.W(), b.H()) / 2
	return Box{cx - h, cy - h, cx + h, cy + h}
}

// Region is the part of the photo the Face0 crop shows for a detector box:
// the box expanded by m, then squared.
func Region(b Box, m Margins, s Scaling) Box { return Square(Expand(b, m, s)) }

// Pixels rounds a region to whole pixels: corners to the nearest pixel edge,
// width and height to at least one pixel.
func Pixels(r Box) image.Rectangle {
	x, y := int(math.Round(r.X1)), int(math.Round(r.Y1))
	w, h := max(1, int(math.Round(r.W()))), max(1, int(math.Round(r.H())))
	return image.Rect(x, y, x+w, y+h)
}

// MaxRegionPixels bounds the intermediate canvas of Extract, so that a box
// far larger than any photo (a bug upstream, or hostile input) fails instead
// of allocating gigabytes.
const MaxRegionPixels = 100_000_000

// Extract cuts region r out of src and resizes it to size x size (bilinear,
// with a filter wide enough for shrinking). Parts of r outside src are black.
// Callers pass a square region to keep the aspect ratio.
func Extract(src image.Image, r Box, size int) (*image.NRGBA, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("crop region %v is empty or not finite", r)
	}
	if size <= 0 {
		return nil, fmt.Errorf("crop size %d must be positive", size)
	}
	px := Pixels(r)
	if int64(px.Dx())*int64(px.Dy()) > MaxRegionPixels {
		return nil, fmt.Errorf("crop region %dx%d is larger than %d pixels", px.Dx(), px.Dy(), MaxRegionPixels)
	}
	// The region is first copied to a canvas of its own size, black where it
	// leaves the photo, so the resize sees exactly the region's pixels (a
	// resampling filter reading straight from src would pull in photo pixels
	// from beyond the region's edges).
	canvas := image.NewNRGBA(image.Rect(0, 0, px.Dx(), px.Dy()))
	fillOpaqueBlack(canvas)
	inter := px.Intersect(src.Bounds())
	if !inter.Empty() {
		draw.Draw(canvas, inter.Sub(px.Min), src, inter.Min, draw.Src)
	}
	if px.Dx() == size && px.Dy() == size {
		return canvas, nil
	}
	dst := image.NewNRGBA(image.Rect(0, 0, size, size))
	xdraw.BiLinear.Scale(dst, dst.Rect, canvas, canvas.Rect, xdraw.Src, nil)
	return dst, nil
}

func fillOpaqueBlack(m *image.NRGBA) {
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 255
	}
}
