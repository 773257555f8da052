package evalnet

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"

	xdraw "golang.org/x/image/draw"

	"github.com/face0/face0/nodes/face/crop"
)

// pix is a Side×Side RGB image, HWC, channels in [0, 1].
type pix []float32

// toPix brings any image to Side×Side: a box average when its sides are
// whole multiples of Side (a 128 px render, a 32 px sample), Catmull-Rom
// otherwise.
func toPix(img image.Image) pix {
	b := img.Bounds()
	out := make(pix, Side*Side*3)
	if b.Dx()%Side == 0 && b.Dy()%Side == 0 {
		fx, fy := b.Dx()/Side, b.Dy()/Side
		k := 1 / float32(fx*fy*65535)
		for y := range Side {
			for x := range Side {
				var r, g, bl float32
				for dy := range fy {
					for dx := range fx {
						cr, cg, cb, _ := img.At(b.Min.X+x*fx+dx, b.Min.Y+y*fy+dy).RGBA()
						r, g, bl = r+float32(cr), g+float32(cg), bl+float32(cb)
					}
				}
				o := out[(y*Side+x)*3:]
				o[0], o[1], o[2] = r*k, g*k, bl*k
			}
		}
		return out
	}
	dst := image.NewNRGBA(image.Rect(0, 0, Side, Side))
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), img, b, xdraw.Src, nil)
	for i := range Side * Side {
		c := dst.Pix[4*i:]
		out[3*i], out[3*i+1], out[3*i+2] = float32(c[0])/255, float32(c[1])/255, float32(c[2])/255
	}
	return out
}

// Image converts back, for looking at crops.
func (p pix) Image() image.Image {
	m := image.NewNRGBA(image.Rect(0, 0, Side, Side))
	for i := range Side * Side {
		c := func(v float32) uint8 { return uint8(math.Round(float64(min(max(v, 0), 1)) * 255)) }
		m.SetNRGBA(i%Side, i/Side, color.NRGBA{c(p[3*i]), c(p[3*i+1]), c(p[3*i+2]), 255})
	}
	return m
}

// normalize writes p into a network input (centred, unit-ish scale).
func (p pix) normalize(x []float32) {
	for i, v := range p {
		x[i] = (v - 0.5) * 4
	}
}

// faceRegion is the Face0 crop around a face box (in Side pixels): the
// paper's margins scaled with the face (nodes/face/crop's rule, the one
// DetectFace uses), squared.
func faceRegion(b crop.Box) crop.Box { return crop.Region(b, crop.Paper, crop.Proportional) }

// cropPix samples region r of p (Side pixels, fractional corners)
// bilinearly into a new Side×Side image; outside p is black, as in the
// face pack's crops. At this resolution rounding the region to whole
// pixels (crop.Extract) would move it by up to 3% of its side.
func cropPix(p pix, r crop.Box) pix {
	out := make(pix, Side*Side*3)
	sx, sy := r.W()/Side, r.H()/Side
	for y := range Side {
		fy := r.Y1 + (float64(y)+0.5)*sy - 0.5
		for x := range Side {
			fx := r.X1 + (float64(x)+0.5)*sx - 0.5
			x0, y0 := math.Floor(fx), math.Floor(fy)
			ax, ay := float32(fx-x0), float32(fy-y0)
			o := out[(y*Side+x)*3:][:3]
			for _, t := range [4]struct {
				dx, dy int
				w      float32
			}{{0, 0, (1 - ax) * (1 - ay)}, {1, 0, ax * (1 - ay)}, {0, 1, (1 - ax) * ay}, {1, 1, ax * ay}} {
				xx, yy := int(x0)+t.dx, int(y0)+t.dy
				if xx < 0 || yy < 0 || xx >= Side || yy >= Side || t.w == 0 {
					continue
				}
				s := p[(yy*Side+xx)*3:][:3]
				o[0] += t.w * s[0]
				o[1] += t.w * s[1]
				o[2] += t.w * s[2]
			}
		}
	}
	return out
}

// augment perturbs a training image the way model samples differ from
// renders: blur, 4×4 blocks (the tiny model's latent tokens), colour gain
// and offset, noise.
func augment(p pix, r *rand.Rand) {
	if r.Float64() < 0.35 {
		blur(p)
	}
	if r.Float64() < 0.3 {
		blocky(p, float32(r.Float64()*0.6))
	}
	gain := float32(0.85 + 0.3*r.Float64())
	off := float32(-0.06 + 0.12*r.Float64())
	sigma := float32(0.06 * r.Float64())
	for i := range p {
		p[i] = p[i]*gain + off + sigma*float32(r.NormFloat64())
	}
}

func blur(p pix) {
	src := append(pix(nil), p...)
	for y := range Side {
		for x := range Side {
			var s [3]float32
			var n float32
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					yy, xx := y+dy, x+dx
					if yy < 0 || yy >= Side || xx < 0 || xx >= Side {
						continue
					}
					c := src[(yy*Side+xx)*3:]
					s[0], s[1], s[2] = s[0]+c[0], s[1]+c[1], s[2]+c[2]
					n++
				}
			}
			o := p[(y*Side+x)*3:]
			o[0], o[1], o[2] = s[0]/n, s[1]/n, s[2]/n
		}
	}
}

// blocky mixes each pixel with the mean of its 4×4 block (weight 1−keep).
func blocky(p pix, keep float32) {
	for by := 0; by < Side; by += 4 {
		for bx := 0; bx < Side; bx += 4 {
			var s [3]float32
			for y := by; y < by+4; y++ {
				for x := bx; x < bx+4; x++ {
					c := p[(y*Side+x)*3:]
					s[0], s[1], s[2] = s[0]+c[0], s[1]+c[1], s[2]+c[2]
				}
			}
			for y := by; y < by+4; y++ {
				for x := bx; x < bx+4; x++ {
					c := p[(y*Side+x)*3:]
					for k := range 3 {
						c[k] = keep*c[k] + (1-keep)*s[k]/16
					}
				}
			}
		}
	}
}

func mirrorPix(p pix) {
	for y := range Side {
		for i, j := 0, Side-1; i < j; i, j = i+1, j-1 {
			a, b := p[(y*Side+i)*3:][:3], p[(y*Side+j)*3:][:3]
			for k := range 3 {
				a[k], b[k] = b[k], a[k]
			}
		}
	}
}
