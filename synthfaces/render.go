package synthfaces

import (
	"image"
	"math"
)

// RenderOptions sets the output resolution and the supersampling factor.
type RenderOptions struct {
	Size        int // output side in pixels (default 128)
	Supersample int // canvas is Size*Supersample per side, box-filtered down (default 2)
}

func (o RenderOptions) norm() RenderOptions {
	if o.Size <= 0 {
		o.Size = 128
	}
	if o.Supersample <= 0 {
		o.Supersample = 2
	}
	return o
}

// Render draws one image. It returns the image and the face box (the skin
// area of the face, forehead to chin and ear to ear, in output pixels), which
// lets a caller crop the face without a detector.
func Render(a Identity, s Scene, v Variation, o RenderOptions) (*image.RGBA, image.Rectangle) {
	o = o.norm()
	a.resolve()
	n := o.Size * o.Supersample
	cv := newCanvas(n, n)
	bg, _ := lookup(BackgroundColors, s.Background)
	st := newStyler(s.Style, v.Light, o.Supersample, v.Texture)
	st.background(cv, bg.rgb())
	f := &fig{cv: cv, st: st, a: &a, s: &s, v: &v}
	side := float64(n)
	f.c = pt{(0.5 + v.DX) * side, (0.55 + v.DY) * side}
	f.k = 0.245 * side * v.Scale
	f.cs, f.sn = math.Cos(v.Rotation), math.Sin(v.Rotation)
	f.draw()
	st.finish(cv)
	img := cv.toImage(o.Supersample)
	box := f.faceBox(o.Supersample)
	return img, box
}

// fig draws the figure in face-local units: origin at the face centre, face
// half-height 1, y down. tf maps them to canvas pixels.
type fig struct {
	cv     *canvas
	st     *styler
	a      *Identity
	s      *Scene
	v      *Variation
	c      pt
	k      float64
	cs, sn float64
	fa     float64 // face half-width
	eyeY   float64
	eyeX   float64
}

func (f *fig) p(q pt) pt {
	x, y := q.x*f.k, q.y*f.k
	return pt{f.c.x + x*f.cs - y*f.sn, f.c.y + x*f.sn + y*f.cs}
}

func (f *fig) tf(polys ...[]pt) [][]pt {
	out := make([][]pt, len(polys))
	for i, poly := range polys {
		o := make([]pt, len(poly))
		for j, q := range poly {
			o[j] = f.p(q)
		}
		out[i] = o
	}
	return out
}

// sh returns the canvas shading ellipsoid of a local ellipse.
func (f *fig) sh(c pt, rx, ry float64) shading {
	return shading{c: f.p(c), rx: rx * f.k, ry: ry * f.k}
}

var flat = shading{flat: true}

// shape fills local polygons with base colour and the style's outline
// (outline weight 0: none).
func (f *fig) shape(polys [][]pt, base rgb, sh shading, outline float64) {
	tp := f.tf(polys...)
	f.cv.fill(tp, f.st.paint(base, sh), 1, true)
	if outline > 0 {
		w, col, op := f.st.outline(base, outline)
		if w > 0 {
			var rings [][]pt
			for _, p := range tp {
				rings = append(rings, ribbon(p, []float64{w}, true)...)
			}
			f.cv.fill(rings, solid(col), op, true)
		}
	}
}

// line strokes a local polyline with a width in local units (at least
// minPx output pixels).
func (f *fig) line(pts []pt, width float64, c rgb, opacity float32, minPx float64) {
	w := width * f.k
	if m := minPx * f.st.px; w < m {
		w = m
	}
	f.cv.fill(ribbon(f.tf(pts)[0], []float64{w}, false), solid(c), opacity, true)
}

// taper strokes a polyline whose width goes from w0 to w1 (local units).
func (f *fig) taper(pts []pt, w0, w1 float64, c rgb, opacity float32) {
	ws := make([]float64, len(pts))
	for i := range ws {
		t := float64(i) / float64(len(pts)-1)
		ws[i] = math.Max((w0+(w1-w0)*t)*f.k, 0.7*f.st.px)
	}
	tp := f.tf(pts)[0]
	poly := ribbon(tp, ws, false)
	f.cv.fill(poly, solid(c), opacity, true)
}

func (f *fig) faceBox(ss int) image.Rectangle {
	x0, y0, x1, y1 := bbox(f.tf(f.faceOutline()))
	s := float64(ss)
	return image.Rect(int(x0/s), int(y0/s), int(math.Ceil(x1/s)), int(math.Ceil(y1/s)))
}

// ---- face geometry ----

type faceGeom struct {
	a, lower, jawN, taper float64
}

func (f *fig) geom() faceGeom {
	var g faceGeom
	switch f.a.FaceShape {
	case "round":
		g = faceGeom{0.86, 1.0, 2.0, 0.05}
	case "oval":
		g = faceGeom{0.74, 1.04, 2.0, 0.16}
	case "long":
		g = faceGeom{0.66, 1.14, 2.3, 0.12}
	case "square":
		g = faceGeom{0.80, 1.0, 3.6, 0.05}
	case "heart":
		g = faceGeom{0.82, 1.06, 1.9, 0.36}
	default:
		g = faceGeom{0.78, 1.0, 2.0, 0.1}
	}
	g.a *= f.a.FaceWidth
	return g
}

func (f *fig) faceOutline() []pt {
	g := f.geom()
	const n = 72
	out := make([]pt, n)
	turn := f.v.Turn
	for i := range out {
		t := 2 * math.Pi * float64(i) / n
		c, s := math.Cos(t), math.Sin(t)
		var x, y float64
		if s <= 0 {
			x, y = g.a*c, 1.0*s
		} else {
			e := 2 / g.jawN
			x = g.a * math.Copysign(math.Pow(math.Abs(c), e), c)
			y = g.lower * math.Pow(s, e)
			x *= 1 - g.taper*s*s
			x += turn * 0.08 * s * s // the chin follows the turn
		}
		out[i] = pt{x, y}
	}
	return out
}

func (f *fig) draw() {
	a := f.a
	g := f.geom()
	f.fa = g.a
	skin := a.skin
	hair := a.hair
	skinSh := f.sh(pt{f.v.Turn * 0.1, -0.05}, g.a*1.05, 1.15)

	// hair behind the head
	f.hairBack(hair)

	// neck and body
	neck := []pt{{-0.3, 0.4}, {0.3, 0.4}, {0.34, 1.5}, {-0.34, 1.5}}
	f.shape([][]pt{neck}, skin.scale(0.8), f.sh(pt{0, 0.9}, 0.4, 0.8), 1)
	f.body()

	// ears
	ey := -0.05
	for _, side := range []float64{-1, 1} {
		es := a.EarSize * (1 - 0.3*side*f.v.Turn)
		c := pt{side * (g.a - 0.02), ey}
		ear := ellipse(c, 0.13*es, 0.22*es, 0, 24)
		f.shape([][]pt{ear}, skin, f.sh(c, 0.13*es, 0.22*es), 1)
		f.shape([][]pt{ellipse(c.add(pt{-side * 0.02, 0.01}), 0.06*es, 0.13*es, 0, 16)}, skin.scale(0.78), flat, 0)
	}

	// face
	f.shape([][]pt{f.faceOutline()}, skin, skinSh, 1)

	f.freckles(skin)
	f.facialHair(hair, true)
	f.eyes()
	f.brows(hair)
	f.nose(skin)
	f.mouth(skin)
	f.facialHair(hair, false)
	f.hairFront(hair)
	f.glasses()
	f.hat()
}

func (f *fig) body() {
	c, ok := lookup(ItemColors, f.s.ClothingColor)
	col := c.rgb()
	if !ok {
		col = rgb{0.55, 0.55, 0.58}
	}
	top := 1.28
	var b []pt
	b = append(b, pt{-2.6, 3.5}, pt{-2.4, top + 0.55})
	b = append(b, bezier(pt{-2.4, top + 0.55}, pt{-2.2, top}, pt{-1.2, top - 0.05}, pt{-0.42, top - 0.08}, 10)...)
	// neckline
	b = append(b, quad(pt{-0.42, top - 0.08}, pt{0, top + 0.45}, pt{0.42, top - 0.08}, 10)...)
	b = append(b, bezier(pt{0.42, top - 0.08}, pt{1.2, top - 0.05}, pt{2.2, top}, pt{2.4, top + 0.55}, 10)...)
	b = append(b, pt{2.6, 3.5})
	f.shape([][]pt{b}, col, f.sh(pt{0, top + 1.2}, 2.6, 1.6), 1)
}

// arc returns the upper half of an ellipse, from left to right.
func (f *fig) arc(c pt, rx, ry float64, n int) []pt {
	out := make([]pt, n+1)
	for i := 0; i <= n; i++ {
		t := math.Pi + math.Pi*float64(i)/float64(n)
		out[i] = pt{c.x + rx*math.Cos(t), c.y + ry*math.Sin(t)}
	}
	return out
}
