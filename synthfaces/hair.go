package synthfaces

import (
	"math"
)

// Hair: its volume behind the head (hairBack, drawn before the face) and the
// cap and fringe over it (hairFront, drawn after), most styles built on the
// same crown arc.

// crown returns the crown arc of the hair (left temple over the top to the
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
