package synthfaces

import (
	"math"
)

// Accessories drawn over the face: glasses and hats.

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
