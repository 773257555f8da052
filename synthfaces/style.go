package synthfaces

import "math"

// shading describes an ellipsoid bump (canvas pixels) used by the shaded
// styles to fake a surface normal inside a shape.
type shading struct {
	c      pt
	rx, ry float64
	flat   bool // no shading (small details)
}

// styler turns base colours into paints and outlines for one art style.
type styler struct {
	style   string
	light   [3]float64 // unit vector towards the light (screen x right, y down, z out)
	px      float64    // canvas pixels per output pixel (the supersampling factor)
	texture uint64
}

func newStyler(style string, lightAngle float64, ss int, texture uint64) *styler {
	lx, ly, lz := math.Cos(lightAngle)*0.8, math.Sin(lightAngle)*0.8-0.3, 1.0
	n := math.Sqrt(lx*lx + ly*ly + lz*lz)
	return &styler{style: style, light: [3]float64{lx / n, ly / n, lz / n}, px: float64(ss), texture: texture}
}

// lum is the diffuse light factor (about 0.45..1.1) of the ellipsoid at (x, y).
func (s *styler) lum(sh shading, x, y float64) float64 {
	u, v := (x-sh.c.x)/sh.rx, (y-sh.c.y)/sh.ry
	d := u*u + v*v
	if d > 1 {
		u, v, d = u/math.Sqrt(d), v/math.Sqrt(d), 1
	}
	nz := math.Sqrt(1 - d)
	// soften the normal so that edges do not go black
	nx, ny := 0.7*u, 0.7*v
	nn := math.Sqrt(nx*nx + ny*ny + nz*nz)
	dot := (nx*s.light[0] + ny*s.light[1] + nz*s.light[2]) / nn
	if dot < 0 {
		dot = 0
	}
	return 0.5 + 0.58*dot
}

func posterise(c rgb) rgb {
	// boost saturation, then quantise the brightness to 5 levels, keeping the hue
	g := c.gray()
	c = rgb{g + (c.r-g)*1.35, g + (c.g-g)*1.35, g + (c.b-g)*1.35}.clamp()
	v := max(c.r, c.g, c.b)
	if v <= 0 {
		return c
	}
	q := float32(math.Ceil(float64(v)*5-0.25)) / 5
	return c.scale(q / v).clamp()
}

// sketchTone maps a colour to the pale graphite value used by the sketch style.
func sketchTone(c rgb) float32 { return 1 - 0.55*(1-c.gray()) }

// paint returns the fill paint of a shape with base colour c.
func (s *styler) paint(c rgb, sh shading) paint {
	switch s.style {
	case StylePhoto:
		if sh.flat {
			return solid(c)
		}
		return func(x, y float64) rgb { return c.scale(float32(s.lum(sh, x, y))).clamp() }
	case StyleCartoon:
		if sh.flat {
			return solid(c)
		}
		dark := c.scale(0.82)
		return func(x, y float64) rgb {
			if s.lum(sh, x, y) < 0.72 {
				return dark
			}
			return c
		}
	case StylePopArt:
		p := posterise(c)
		return solid(p)
	case StyleSketch:
		t := sketchTone(c)
		step := 3.2 * s.px
		return func(x, y float64) rgb {
			v := t
			if !sh.flat && s.lum(sh, x, y) < 0.8 {
				// diagonal hatching in the shadows
				if math.Mod(x+y+1e4, step) < 0.9*s.px {
					v -= 0.25
				}
			}
			v -= float32(hash2(s.texture, int(x), int(y))) * 0.05
			return rgb{v, v, v}
		}
	}
	return solid(c)
}

// outline returns the outline width in canvas pixels, colour and opacity for
// the style (width 0: none). weight scales the width for small details.
func (s *styler) outline(c rgb, weight float64) (float64, rgb, float32) {
	switch s.style {
	case StylePhoto:
		return 0.9 * s.px * weight, c.scale(0.6), 0.35
	case StyleCartoon:
		return 1.1 * s.px * weight, rgb{0.1, 0.08, 0.08}, 1
	case StylePopArt:
		return 1.7 * s.px * weight, rgb{0, 0, 0}, 1
	case StyleSketch:
		return 0.9 * s.px * weight, rgb{0.22, 0.22, 0.24}, 0.9
	}
	return 0, rgb{}, 0
}

// ink is the colour of line work (lids, mouth lines) of base colour c.
func (s *styler) ink(c rgb) rgb {
	switch s.style {
	case StylePopArt:
		return rgb{0, 0, 0}
	case StyleSketch:
		v := 1 - 1.1*(1-c.gray())
		if v < 0.1 {
			v = 0.1
		}
		return rgb{v, v, v}
	}
	return c
}

// background paints the background of colour c over the whole canvas.
func (s *styler) background(cv *canvas, c rgb) {
	w, h := float64(cv.w), float64(cv.h)
	switch s.style {
	case StylePhoto:
		for y := 0; y < cv.h; y++ {
			for x := 0; x < cv.w; x++ {
				fx, fy := (float64(x)+0.5)/w-0.5, (float64(y)+0.5)/h-0.5
				k := 1.04 - 0.16*(fx*fx+fy*fy) - 0.08*fy + 0.06*(fx*s.light[0]+fy*s.light[1])
				cv.pix[y*cv.w+x] = c.scale(float32(k)).clamp()
			}
		}
	case StylePopArt:
		cell := w / 24
		dot := c.lerp(rgb{1, 1, 1}, 0.35)
		for y := 0; y < cv.h; y++ {
			for x := 0; x < cv.w; x++ {
				fx, fy := math.Mod(float64(x)+0.5, cell)-cell/2, math.Mod(float64(y)+0.5, cell)-cell/2
				p := c
				if fx*fx+fy*fy < cell*cell*0.08 {
					p = dot
				}
				cv.pix[y*cv.w+x] = p
			}
		}
	case StyleSketch:
		for y := 0; y < cv.h; y++ {
			for x := 0; x < cv.w; x++ {
				n := float32(hash2(s.texture^0x55, x/int(s.px), y/int(s.px)))
				cv.pix[y*cv.w+x] = c.scale(0.97 + 0.06*n).clamp()
			}
		}
	default:
		for i := range cv.pix {
			cv.pix[i] = c
		}
	}
}

// finish applies whole-image effects after the figure is drawn.
func (s *styler) finish(cv *canvas) {
	if s.style != StylePhoto {
		return
	}
	w, h := float64(cv.w), float64(cv.h)
	for y := 0; y < cv.h; y++ {
		for x := 0; x < cv.w; x++ {
			i := y*cv.w + x
			f := cv.fig[i]
			if f == 0 {
				continue
			}
			fx, fy := (float64(x)+0.5)/w-0.5, (float64(y)+0.5)/h-0.5
			k := 1 + 0.22*(fx*s.light[0]+fy*s.light[1])
			n := (hash2(s.texture, x, y) - 0.5) * 0.04
			cv.pix[i] = cv.pix[i].scale(float32(1 + (k-1+n)*float64(f))).clamp()
		}
	}
}
