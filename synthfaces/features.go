package synthfaces

import (
	"math"
)

// The face's features, drawn by fig.draw in order: skin marks, eyes, brows,
// nose, mouth and facial hair.

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
