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

func (f *fig) freckles(skin rgb) {
	a := f.a
	dot := skin.scale(0.72)
	if f.st.style == StylePopArt {
		dot = skin.scale(0.6)
	}
	if a.Freckles {
		r := newRNG(uint64(a.ID), 77)
		for i := 0; i < 18; i++ {
			side := 1.0
			if i%2 == 0 {
				side = -1
			}
			c := pt{side*r.rangef(0.22, 0.55) + f.v.Turn*0.1, r.rangef(0.05, 0.3)}
			f.shape([][]pt{circle(c, 0.018, 8)}, dot, flat, 0)
		}
	}
	if a.Mole {
		c := pt{a.MoleX + f.v.Turn*0.1, a.MoleY}
		f.shape([][]pt{circle(c, 0.03, 10)}, rgb{0.25, 0.15, 0.1}, flat, 0)
	}
}

// eyeGeom returns the sclera outline and the upper lid curve of one eye.
func (f *fig) eyeGeom(c pt, side float64) ([]pt, []pt) {
	a := f.a
	w := 0.15 * a.EyeSize
	h := 0.075 * a.EyeSize
	droop := 0.0
	switch a.EyeShape {
	case "round":
		h = 0.11 * a.EyeSize
	case "narrow":
		h = 0.048 * a.EyeSize
		w *= 1.08
	case "droopy":
		droop = 0.035
	}
	switch f.s.Expression {
	case "smile":
		h *= 0.8
	case "open":
		h *= 1.12
	}
	// turn: the eye on the side the head turns towards gets narrower
	w *= 1 - 0.22*math.Max(0, side*f.v.Turn)
	in := pt{c.x - side*w, c.y}
	out := pt{c.x + side*w, c.y + droop}
	var upper, lower []pt
	if a.EyeShape == "round" {
		upper = bezier(in, pt{in.x, c.y - 1.3*h}, pt{out.x, c.y - 1.3*h}, out, 14)
		lower = bezier(out, pt{out.x, c.y + 1.3*h}, pt{in.x, c.y + 1.3*h}, in, 14)
	} else {
		upper = bezier(in, pt{c.x - side*0.4*w, c.y - 1.9*h}, pt{c.x + side*0.5*w, c.y - 1.7*h}, out, 14)
		lower = bezier(out, pt{c.x + side*0.4*w, c.y + 1.3*h}, pt{c.x - side*0.4*w, c.y + 1.3*h}, in, 14)
	}
	sclera := append(append([]pt{}, upper...), lower[1:]...)
	return sclera, upper
}

func (f *fig) eyes() {
	a := f.a
	f.eyeY = -0.12 + a.EyeHeight
	f.eyeX = 0.34 * a.EyeSpacing * (0.5 + 0.5*f.fa/0.78)
	shift := f.v.Turn * 0.1
	lidCol := f.st.ink(rgb{0.15, 0.1, 0.08})
	for _, side := range []float64{-1, 1} {
		c := pt{side*f.eyeX + shift, f.eyeY}
		sclera, upper := f.eyeGeom(c, side)
		f.shape([][]pt{sclera}, rgb{0.96, 0.95, 0.93}, flat, 0.6)
		ir := 0.075 * math.Min(a.EyeSize, 1.15)
		ic := pt{c.x + f.v.Turn*0.03, c.y + 0.005}
		tc := f.tf(sclera)
		iris := f.tf(circle(ic, ir, 20))
		f.cv.fillClip(iris, tc, f.st.paint(a.eye, flat), 1, true)
		pupil := f.tf(circle(ic, ir*0.45, 14))
		f.cv.fillClip(pupil, tc, solid(rgb{0.03, 0.03, 0.03}), 1, true)
		if f.st.style == StylePhoto || f.st.style == StyleCartoon {
			hl := f.tf(circle(ic.add(pt{ir * 0.35, -ir * 0.35}), ir*0.25, 10))
			f.cv.fillClip(hl, tc, solid(rgb{1, 1, 1}), 0.9, true)
		}
		f.line(upper, 0.028, lidCol, 1, 0.9)
		// lashes at the outer corner
		o := upper[len(upper)-1]
		f.line([]pt{o, o.add(pt{side * 0.05, -0.035})}, 0.02, lidCol, 1, 0.7)
	}
}

func (f *fig) brows(hair rgb) {
	a := f.a
	col := hair.scale(0.8)
	if a.HairStyle == "bald" || a.HairColor == "platinum" || a.HairColor == "gray" {
		col = hair.scale(0.6)
	}
	col = f.st.ink(col)
	if f.st.style == StylePopArt {
		col = posterise(col)
	}
	lift := 0.0
	if f.s.Expression == "open" {
		lift = 0.05
	}
	shift := f.v.Turn * 0.1
	y := f.eyeY - 0.2 - lift - 0.04*a.EyeSize
	for _, side := range []float64{-1, 1} {
		in := pt{side*(f.eyeX-0.15) + shift, y + 0.02}
		out := pt{side*(f.eyeX+0.2) + shift, y + 0.03}
		var pts []pt
		switch a.BrowShape {
		case "straight":
			pts = quad(in, in.lerp(out, 0.5).add(pt{0, -0.02}), out, 10)
		case "arched":
			pts = quad(in, in.lerp(out, 0.55).add(pt{0, -0.12}), out.add(pt{0, 0.02}), 10)
		case "angled":
			peak := in.lerp(out, 0.65).add(pt{0, -0.07})
			pts = append(quad(in, in.lerp(peak, 0.5).add(pt{0, -0.01}), peak, 6), quad(peak, peak.lerp(out, 0.5), out.add(pt{0, 0.03}), 5)[1:]...)
		}
		f.taper(pts, 0.06*a.BrowWeight, 0.025*a.BrowWeight, col, 1)
	}
}

func (f *fig) nose(skin rgb) {
	a := f.a
	sz := a.NoseSize
	x := f.v.Turn * 0.17
	ink := f.st.ink(skin.scale(0.62))
	shade := skin.scale(0.82)
	tipY := 0.2 + 0.06*sz
	switch a.NoseShape {
	case "button":
		c := pt{x, tipY - 0.03}
		f.shape([][]pt{circle(c, 0.075*sz, 16)}, skin.scale(0.93), f.sh(c.add(pt{-0.02, -0.02}), 0.09*sz, 0.09*sz), 0.5)
	case "straight":
		side := 1.0
		if f.v.Turn < 0 {
			side = -1
		}
		f.line(bezier(pt{x - side*0.06, -0.08}, pt{x - side*0.07, 0.02}, pt{x - side*0.08, tipY - 0.12}, pt{x - side*0.075, tipY - 0.04}, 8), 0.018, ink, 0.7, 0.6)
		f.line(quad(pt{x - 0.1*sz, tipY}, pt{x, tipY + 0.06*sz}, pt{x + 0.1*sz, tipY}, 8), 0.022, ink, 0.85, 0.7)
	case "wide":
		f.shape([][]pt{ellipse(pt{x, tipY - 0.01}, 0.09*sz, 0.06*sz, 0, 16)}, shade, flat, 0)
		for _, s := range []float64{-1, 1} {
			f.line(quad(pt{x + s*0.1*sz, tipY - 0.08}, pt{x + s*0.19*sz, tipY}, pt{x + s*0.08*sz, tipY + 0.04}, 8), 0.022, ink, 0.9, 0.7)
		}
	case "pointed":
		tri := []pt{{x - 0.01, -0.05}, {x + 0.06*sz, tipY}, {x - 0.06*sz, tipY + 0.005}}
		f.shape([][]pt{tri}, shade, flat, 0)
		f.line([]pt{{x - 0.07*sz, tipY + 0.01}, {x, tipY + 0.04}, {x + 0.07*sz, tipY + 0.01}}, 0.02, ink, 0.9, 0.6)
	}
	{
		for _, s := range []float64{-1, 1} {
			f.shape([][]pt{ellipse(pt{x + s*0.045*sz, tipY + 0.02}, 0.022*sz, 0.013*sz, 0, 10)}, skin.scale(0.4), flat, 0)
		}
	}
}

func (f *fig) mouth(skin rgb) {
	a := f.a
	x := f.v.Turn * 0.12
	y := 0.5
	w := 0.25 * a.MouthWidth
	lt := 0.045 * a.LipFull
	lip := a.lip.lerp(skin, 0.25)
	ink := f.st.ink(lip.scale(0.45))
	dark := rgb{0.28, 0.06, 0.08}
	teeth := rgb{0.97, 0.96, 0.92}
	L, R := pt{x - w, y}, pt{x + w, y}
	switch f.s.Expression {
	case "neutral":
		upper := append(bezier(L, pt{x - w*0.5, y - lt*1.1}, pt{x - w*0.25, y - lt*1.6}, pt{x, y - lt*0.9}, 8),
			bezier(pt{x, y - lt*0.9}, pt{x + w*0.25, y - lt*1.6}, pt{x + w*0.5, y - lt*1.1}, R, 8)[1:]...)
		upper = append(upper, quad(R, pt{x, y + 0.01}, L, 10)[1:]...)
		lower := append(quad(L, pt{x, y + 0.01}, R, 10), quad(R, pt{x, y + lt*2.6}, L, 12)[1:]...)
		f.shape([][]pt{lower}, lip, f.sh(pt{x, y + lt}, w, lt*1.5), 0.6)
		f.shape([][]pt{upper}, lip.scale(0.88), flat, 0.6)
		f.line(quad(L, pt{x, y + 0.01}, R, 10), 0.018, ink, 1, 0.7)
	case "smile":
		Lu, Ru := L.add(pt{-0.02, -0.07}), R.add(pt{0.02, -0.07})
		top := quad(Lu, pt{x, y - 0.01}, Ru, 12)
		bot := quad(Ru, pt{x, y + 0.22}, Lu, 14)
		open := append(append([]pt{}, top...), bot[1:]...)
		f.shape([][]pt{open}, dark, flat, 0)
		tt := f.tf(open)
		teethBand := append(append([]pt{}, quad(Lu, pt{x, y - 0.02}, Ru, 12)...), quad(Ru, pt{x, y + 0.1}, Lu, 12)[1:]...)
		f.cv.fillClip(f.tf(teethBand), tt, f.st.paint(teeth, flat), 1, true)
		// lips around the opening
		lowerLip := append(quad(Ru, pt{x, y + 0.22}, Lu, 14), quad(Lu, pt{x, y + 0.22 + lt*1.6}, Ru, 14)[1:]...)
		f.shape([][]pt{lowerLip}, lip, flat, 0.6)
		f.line(top, 0.022, ink, 1, 0.7)
		// cheek creases
		for _, s := range []float64{-1, 1} {
			c := pt{x + s*(w+0.05), y - 0.09}
			f.line(quad(c, c.add(pt{s * 0.045, 0.04}), c.add(pt{s * 0.01, 0.1}), 6), 0.016, f.st.ink(skin.scale(0.7)), 0.6, 0.5)
		}
	case "open":
		ow, oh := w*0.62, 0.13
		c := pt{x, y + 0.04}
		hole := ellipse(c, ow, oh, 0, 28)
		f.shape([][]pt{ellipse(c, ow+lt*0.8, oh+lt*1.1, 0, 28)}, lip, f.sh(c, ow, oh+lt), 0.6)
		f.shape([][]pt{hole}, dark, flat, 0)
		th := f.tf(hole)
		f.cv.fillClip(f.tf(ellipse(c.add(pt{0, -oh}), ow*0.8, oh*0.38, 0, 20)), th, f.st.paint(teeth, flat), 1, true)
		f.cv.fillClip(f.tf(ellipse(c.add(pt{0, oh * 0.9}), ow*0.7, oh*0.55, 0, 20)), th, f.st.paint(rgb{0.8, 0.35, 0.4}, flat), 1, true)
	}
}

func (f *fig) facialHair(hair rgb, under bool) {
	a := f.a
	x := f.v.Turn * 0.12
	tipY := 0.2 + 0.06*a.NoseSize
	mw := 0.25 * a.MouthWidth
	switch {
	case under && a.FacialHair == "beard":
		g := f.geom()
		// a band along the jaw, from ear to ear under the mouth
		var outer []pt
		fo := f.faceOutline()
		for _, q := range fo {
			if q.y > 0.05 {
				outer = append(outer, q)
			}
		}
		// outline is ordered by angle 0..pi on the lower half (right to left)
		inner := bezier(pt{-g.a * 0.95, 0.05}, pt{-g.a*0.55 + x, 0.6}, pt{g.a*0.55 + x, 0.6}, pt{g.a * 0.95, 0.05}, 16)
		beard := append(append([]pt{}, outer...), inner...)
		f.shape([][]pt{beard}, hair.scale(0.92), flat, 0.7)
		f.beardTexture(beard, hair)
	case under && a.FacialHair == "goatee":
		c := pt{x, 0.78}
		f.shape([][]pt{ellipse(c, mw*0.55, 0.17, 0, 20)}, hair.scale(0.92), flat, 0.7)
	case !under && (a.FacialHair == "mustache" || a.FacialHair == "goatee" || a.FacialHair == "beard"):
		y := tipY + 0.1
		m := append(quad(pt{x - mw - 0.04, 0.5}, pt{x - mw*0.5, y - 0.06}, pt{x, y - 0.03}, 8),
			quad(pt{x, y - 0.03}, pt{x + mw*0.5, y - 0.06}, pt{x + mw + 0.04, 0.5}, 8)[1:]...)
		m = append(m, quad(pt{x + mw + 0.04, 0.5}, pt{x + mw*0.5, y + 0.07}, pt{x, y + 0.05}, 8)[1:]...)
		m = append(m, quad(pt{x, y + 0.05}, pt{x - mw*0.5, y + 0.07}, pt{x - mw - 0.04, 0.5}, 8)[1:]...)
		f.shape([][]pt{m}, hair.scale(0.85), flat, 0.6)
	}
}

func (f *fig) beardTexture(poly []pt, hair rgb) {
	if f.st.style == StylePopArt || f.st.style == StyleCartoon {
		return
	}
	r := newRNG(uint64(f.a.ID), 99)
	tp := f.tf(poly)
	x0, y0, x1, y1 := bbox(tp)
	for i := 0; i < 40; i++ {
		px, py := r.rangef(x0, x1), r.rangef(y0, y1)
		seg := [][]pt{{{px, py}, {px + f.k*0.01, py + f.k*0.05}}}
		f.cv.fillClip(ribbon(seg[0], []float64{0.6 * f.st.px}, false), tp, solid(f.st.ink(hair.scale(0.6))), 0.5, true)
	}
}

// headTop returns the crown arc of the hair (left temple over the top to the
// right temple) for hair volume vol.
func (f *fig) crown(vol, cy, lowY float64) []pt {
	rx := f.fa*1.08 + 0.05*vol
	ry := 0.95 + 0.12*vol
	var out []pt
	const n = 30
	for i := 0; i <= n; i++ {
		t := math.Pi + math.Pi*float64(i)/n
		out = append(out, pt{rx * math.Cos(t), cy + ry*math.Sin(t)})
	}
	// extend down the sides to lowY
	out = append([]pt{{-rx, lowY}}, out...)
	out = append(out, pt{rx, lowY})
	return out
}

func (f *fig) hairBack(hair rgb) {
	a := f.a
	vol := a.HairVolume
	sh := f.sh(pt{0, -0.5}, f.fa*1.3, 1.1)
	switch a.HairStyle {
	case "long":
		rx := f.fa*1.12 + 0.08*vol
		var p []pt
		p = append(p, pt{-rx - 0.1, 1.5})
		p = append(p, bezier(pt{-rx - 0.1, 1.5}, pt{-rx - 0.05, 0.2}, pt{-rx - 0.02, -1.3}, pt{0, -1.12 - 0.1*vol}, 16)...)
		p = append(p, bezier(pt{0, -1.12 - 0.1*vol}, pt{rx + 0.02, -1.3}, pt{rx + 0.05, 0.2}, pt{rx + 0.1, 1.5}, 16)[1:]...)
		p = append(p, quad(pt{rx + 0.1, 1.5}, pt{0, 1.62}, pt{-rx - 0.1, 1.5}, 10)[1:]...)
		f.shape([][]pt{p}, hair.scale(0.85), f.sh(pt{0, 0}, rx*1.1, 1.6), 1)
	case "curly":
		r := newRNG(uint64(a.ID), 5)
		var cs [][]pt
		for i := 0; i < 26; i++ {
			t := math.Pi*0.85 + math.Pi*1.3*float64(i)/25
			rad := 0.2 + 0.05*r.float()
			cx := (f.fa*1.05 + 0.1*vol) * math.Cos(t)
			cy := -0.2 + (0.92+0.12*vol)*math.Sin(t)
			cs = append(cs, orient(circle(pt{cx, cy}, rad*vol, 14)))
		}
		f.shape(cs, hair.scale(0.9), sh, 1)
	case "bald":
	default:
		f.shape([][]pt{f.crown(vol, -0.15, 0.05)}, hair.scale(0.85), sh, 1)
	}
}

func (f *fig) hairFront(hair rgb) {
	a := f.a
	vol := a.HairVolume
	rx := f.fa*1.08 + 0.05*vol
	sh := f.sh(pt{0, -0.6}, f.fa*1.2, 0.9)
	tx := f.v.Turn * 0.08
	switch a.HairStyle {
	case "short":
		cr := f.crown(vol, -0.15, -0.15)
		hl := bezier(pt{rx, -0.15}, pt{rx * 0.7, -0.5}, pt{0.3*rx + tx, -0.62}, pt{-0.25*rx + tx, -0.55}, 10)
		hl = append(hl, bezier(pt{-0.25*rx + tx, -0.55}, pt{-0.5 * rx, -0.72}, pt{-rx * 0.8, -0.45}, pt{-rx, -0.15}, 10)[1:]...)
		f.shape([][]pt{append(cr[1:len(cr)-1], hl...)}, hair, sh, 1)
	case "fringe":
		cr := f.crown(vol, -0.15, 0.0)
		var hl []pt
		const n = 9
		for i := 0; i <= n; i++ {
			t := float64(i) / n
			xx := rx - 2*rx*t
			yy := -0.36 + 0.05*math.Sin(t*math.Pi*n)
			if i == 0 || i == n {
				yy = 0.0
			}
			hl = append(hl, pt{xx + tx*(1-math.Abs(2*t-1)), yy})
		}
		f.shape([][]pt{append(cr[:], hl[1:len(hl)-1]...)}, hair, sh, 1)
	case "long":
		cr := f.crown(vol, -0.15, -0.15)
		// middle parting, hair framing the face down to the jaw
		var p []pt
		p = append(p, pt{-rx - 0.08, 0.75})
		p = append(p, cr[1:len(cr)-1]...)
		p = append(p, pt{rx + 0.08, 0.75})
		p = append(p, bezier(pt{rx + 0.08, 0.75}, pt{f.fa * 0.95, 0.2}, pt{f.fa * 0.9, -0.55}, pt{tx + 0.02, -0.78}, 12)[1:]...)
		p = append(p, bezier(pt{tx - 0.02, -0.78}, pt{-f.fa * 0.9, -0.55}, pt{-f.fa * 0.95, 0.2}, pt{-rx - 0.08, 0.75}, 12)...)
		f.shape([][]pt{p}, hair, sh, 1)
	case "curly":
		r := newRNG(uint64(a.ID), 6)
		var cs [][]pt
		for i := 0; i < 11; i++ {
			t := math.Pi*1.08 + math.Pi*0.84*float64(i)/10
			rad := 0.15 + 0.04*r.float()
			cx := f.fa * 0.95 * math.Cos(t)
			cy := -0.15 + 0.75*math.Sin(t)
			cs = append(cs, orient(circle(pt{cx + tx, cy}, rad*vol, 14)))
		}
		cs = append(cs, orient(ellipse(pt{0, -0.85}, rx*0.9, 0.3, 0, 20)))
		f.shape(cs, hair, sh, 1)
	case "spiky":
		var p []pt
		const n = 9
		for i := 0; i <= n; i++ {
			t := math.Pi + math.Pi*float64(i)/n
			rr := 1.0
			if i%2 == 1 {
				rr = 1.28 + 0.1*vol
				if f.s.Hat != "none" {
					rr = 1.05
				}
			}
			p = append(p, pt{rx * rr * math.Cos(t) * 0.98, -0.15 + (0.95+0.1*vol)*rr*math.Sin(t)})
		}
		hl := quad(pt{rx, -0.15}, pt{0 + tx, -0.75}, pt{-rx, -0.15}, 12)
		p = append(p, hl[1:len(hl)-1]...)
		f.shape([][]pt{p}, hair, sh, 1)
	case "bald":
		// a little hair above the ears
		for _, s := range []float64{-1, 1} {
			c := pt{s * f.fa * 0.98, -0.3}
			f.shape([][]pt{ellipse(c, 0.09, 0.2, 0, 16)}, hair, flat, 0.5)
		}
		if f.st.style == StylePhoto {
			c := f.tf(ellipse(pt{-0.2, -0.8}, 0.25, 0.08, -0.3, 16))
			f.cv.fill(c, solid(rgb{1, 1, 1}), 0.18, true)
		}
	}
}

func (f *fig) glasses() {
	kind := f.s.Glasses
	if kind == "none" {
		return
	}
	shift := f.v.Turn * 0.1
	frame := rgb{0.08, 0.08, 0.1}
	if f.st.style == StyleSketch {
		frame = rgb{0.15, 0.15, 0.15}
	}
	lens := map[bool][]pt{}
	var lenses [][]pt
	for _, side := range []float64{-1, 1} {
		c := pt{side*f.eyeX + shift, f.eyeY + 0.01}
		sc := 1 - 0.18*math.Max(0, side*f.v.Turn)
		var l []pt
		switch kind {
		case "round":
			l = ellipse(c, 0.2*sc, 0.19, 0, 28)
		case "square":
			l = roundRect(c, 0.22*sc, 0.15, 0.04)
		case "sunglasses":
			l = roundRect(c.add(pt{0, 0.02}), 0.22*sc, 0.14, 0.09)
		}
		lens[side > 0] = l
		lenses = append(lenses, l)
	}
	tl := f.tf(lenses...)
	if kind == "sunglasses" {
		f.cv.fill(tl, f.st.paint(rgb{0.1, 0.1, 0.13}, f.sh(pt{shift, f.eyeY}, f.fa, 0.3)), 0.95, true)
	} else {
		f.cv.fill(tl, solid(rgb{0.8, 0.9, 1}), 0.2, true)
	}
	// frames, bridge and arms
	wpx := math.Max(0.075*f.k, 1.1*f.st.px)
	var rings [][]pt
	for _, l := range tl {
		rings = append(rings, ribbon(l, []float64{wpx}, true)...)
	}
	f.cv.fill(rings, solid(frame), 1, true)
	lx, rx := rightmost(lens[false]), leftmost(lens[true])
	y := f.eyeY - 0.02
	f.line(quad(pt{lx, y}, pt{shift, y - 0.06}, pt{rx, y}, 6), 0.065, frame, 1, 1.1)
	for _, side := range []float64{-1, 1} {
		var e float64
		if side < 0 {
			e = leftmost(lens[false])
		} else {
			e = rightmost(lens[true])
		}
		f.line([]pt{{e, y}, {side * (f.fa + 0.02), y + 0.02}}, 0.065, frame, 1, 1.1)
	}
}

func leftmost(p []pt) float64 {
	m := math.Inf(1)
	for _, q := range p {
		m = math.Min(m, q.x)
	}
	return m
}

func rightmost(p []pt) float64 {
	m := math.Inf(-1)
	for _, q := range p {
		m = math.Max(m, q.x)
	}
	return m
}

func roundRect(c pt, hw, hh, r float64) []pt {
	var out []pt
	corners := []struct{ cx, cy, a0 float64 }{
		{c.x + hw - r, c.y + hh - r, 0},
		{c.x - hw + r, c.y + hh - r, math.Pi / 2},
		{c.x - hw + r, c.y - hh + r, math.Pi},
		{c.x + hw - r, c.y - hh + r, 3 * math.Pi / 2},
	}
	for _, k := range corners {
		for i := 0; i <= 4; i++ {
			t := k.a0 + math.Pi/2*float64(i)/4
			out = append(out, pt{k.cx + r*math.Cos(t), k.cy + r*math.Sin(t)})
		}
	}
	return out
}

func (f *fig) hat() {
	kind := f.s.Hat
	if kind == "none" {
		return
	}
	c, ok := lookup(ItemColors, f.s.HatColor)
	col := c.rgb()
	if !ok {
		col = rgb{0.5, 0.5, 0.52}
	}
	w := f.fa*1.12 + 0.04
	tx := f.v.Turn * 0.06
	switch kind {
	case "cap":
		dome := append(f.arc(pt{tx, -0.5}, w, 0.72, 24), pt{w + tx, -0.45}, pt{-w + tx, -0.45})
		f.shape([][]pt{dome}, col, f.sh(pt{tx, -0.7}, w, 0.7), 1)
		// seam and button
		f.line(quad(pt{tx, -1.2}, pt{tx + 0.02, -0.8}, pt{tx + 0.0, -0.5}, 6), 0.02, col.scale(0.6), 0.8, 0.5)
		f.shape([][]pt{ellipse(pt{tx, -1.21}, 0.07, 0.04, 0, 12)}, col.scale(0.8), flat, 0.6)
		// brim: a visor seen from the front
		brim := bezier(pt{-w * 0.95, -0.48}, pt{-w * 0.6, -0.68}, pt{w * 0.6, -0.68}, pt{w * 0.95, -0.48}, 16)
		brim = append(brim, bezier(pt{w * 0.95, -0.48}, pt{w * 0.8, -0.25}, pt{-w * 0.8, -0.25}, pt{-w * 0.95, -0.48}, 16)[1:]...)
		for i := range brim {
			brim[i].x += tx * 1.5
		}
		f.shape([][]pt{brim}, col.scale(0.88), f.sh(pt{tx, -0.4}, w, 0.3), 1)
	case "beanie":
		dome := append(f.arc(pt{tx, -0.55}, w, 0.78, 24), pt{w + tx, -0.55}, pt{-w + tx, -0.55})
		f.shape([][]pt{dome}, col, f.sh(pt{tx, -0.8}, w, 0.8), 1)
		band := roundRect(pt{tx, -0.5}, w+0.03, 0.14, 0.06)
		f.shape([][]pt{band}, col.scale(0.85), f.sh(pt{tx, -0.5}, w, 0.3), 1)
		// ribs
		for i := -5; i <= 5; i++ {
			x := tx + float64(i)*w/6
			f.line([]pt{{x, -0.61}, {x, -0.39}}, 0.018, col.scale(0.6), 0.7, 0.4)
		}
		f.shape([][]pt{circle(pt{tx, -1.35}, 0.14, 16)}, col.lerp(rgb{1, 1, 1}, 0.4), f.sh(pt{tx, -1.35}, 0.14, 0.14), 1)
	case "top hat":
		crownW := w * 0.78
		cyl := []pt{{tx - crownW, -0.62}, {tx - crownW*0.95, -1.85}, {tx + crownW*0.95, -1.85}, {tx + crownW, -0.62}}
		f.shape([][]pt{cyl}, col, f.sh(pt{tx, -1.2}, crownW, 1.2), 1)
		f.shape([][]pt{ellipse(pt{tx, -1.85}, crownW*0.95, 0.06, 0, 20)}, col.scale(0.7), flat, 0.6)
		bandCol := rgb{0.75, 0.12, 0.12}
		if f.s.HatColor == "red" {
			bandCol = rgb{0.1, 0.1, 0.1}
		}
		band := []pt{{tx - crownW*0.99, -0.86}, {tx + crownW*0.99, -0.86}, {tx + crownW, -0.66}, {tx - crownW, -0.66}}
		f.shape([][]pt{band}, bandCol, flat, 0.6)
		brim := ellipse(pt{tx, -0.62}, w*1.25, 0.12, 0, 28)
		f.shape([][]pt{brim}, col.scale(0.85), f.sh(pt{tx, -0.62}, w*1.25, 0.15), 1)
	}
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
