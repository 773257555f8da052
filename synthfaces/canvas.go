package synthfaces

import (
	"image"
	"image/color"
	"image/draw"
	"math"

	"golang.org/x/image/vector"
)

// rgb is a colour with channels in [0, 1] (sRGB values, no gamma handling).
type rgb struct{ r, g, b float32 }

func rgbOf(c color.NRGBA) rgb {
	return rgb{float32(c.R) / 255, float32(c.G) / 255, float32(c.B) / 255}
}

func (c rgb) scale(k float32) rgb { return rgb{c.r * k, c.g * k, c.b * k} }

func (c rgb) lerp(d rgb, t float32) rgb {
	return rgb{c.r + (d.r-c.r)*t, c.g + (d.g-c.g)*t, c.b + (d.b-c.b)*t}
}

func (c rgb) gray() float32 { return 0.299*c.r + 0.587*c.g + 0.114*c.b }

func (c rgb) clamp() rgb {
	f := func(v float32) float32 {
		if v < 0 {
			return 0
		}
		if v > 1 {
			return 1
		}
		return v
	}
	return rgb{f(c.r), f(c.g), f(c.b)}
}

type pt struct{ x, y float64 }

func (p pt) add(q pt) pt             { return pt{p.x + q.x, p.y + q.y} }
func (p pt) sub(q pt) pt             { return pt{p.x - q.x, p.y - q.y} }
func (p pt) mul(k float64) pt        { return pt{p.x * k, p.y * k} }
func (p pt) lerp(q pt, t float64) pt { return pt{p.x + (q.x-p.x)*t, p.y + (q.y-p.y)*t} }

// paint gives the colour at a canvas pixel position.
type paint func(x, y float64) rgb

func solid(c rgb) paint { return func(float64, float64) rgb { return c } }

// canvas is a float RGB raster with an analytic anti-aliased polygon filler
// (golang.org/x/image/vector). It is rendered at a multiple of the output size
// and box-filtered down (supersampling) in toImage.
type canvas struct {
	w, h int
	pix  []rgb
	fig  []float32 // coverage of the figure (everything but the background)
	z    *vector.Rasterizer
	mask *image.Alpha
	clip *image.Alpha
}

func newCanvas(w, h int) *canvas {
	return &canvas{w: w, h: h, pix: make([]rgb, w*h), fig: make([]float32, w*h), z: vector.NewRasterizer(1, 1)}
}

func bbox(polys [][]pt) (x0, y0, x1, y1 float64) {
	x0, y0, x1, y1 = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range polys {
		for _, q := range p {
			x0, y0 = math.Min(x0, q.x), math.Min(y0, q.y)
			x1, y1 = math.Max(x1, q.x), math.Max(y1, q.y)
		}
	}
	return
}

// raster rasterises the union of polygons (subpaths; overlapping subpaths of
// the same orientation add up and saturate) into an alpha mask over r.
func (c *canvas) raster(dst **image.Alpha, r image.Rectangle, polys [][]pt) *image.Alpha {
	w, h := r.Dx(), r.Dy()
	c.z.Reset(w, h)
	c.z.DrawOp = draw.Src
	for _, p := range polys {
		if len(p) < 3 {
			continue
		}
		c.z.MoveTo(float32(p[0].x-float64(r.Min.X)), float32(p[0].y-float64(r.Min.Y)))
		for _, q := range p[1:] {
			c.z.LineTo(float32(q.x-float64(r.Min.X)), float32(q.y-float64(r.Min.Y)))
		}
		c.z.ClosePath()
	}
	m := *dst
	if m == nil || cap(m.Pix) < w*h {
		m = image.NewAlpha(image.Rect(0, 0, w, h))
		*dst = m
	}
	m.Pix = m.Pix[:w*h]
	m.Stride = w
	m.Rect = image.Rect(0, 0, w, h)
	c.z.Draw(m, m.Rect, image.Opaque, image.Point{})
	return m
}

func (c *canvas) rect(polys [][]pt) (image.Rectangle, bool) {
	x0, y0, x1, y1 := bbox(polys)
	r := image.Rect(int(math.Floor(x0)), int(math.Floor(y0)), int(math.Ceil(x1))+1, int(math.Ceil(y1))+1)
	r = r.Intersect(image.Rect(0, 0, c.w, c.h))
	return r, !r.Empty()
}

// fill paints the union of polys with p at the given opacity. figure marks
// the pixels as part of the figure (for the style passes).
func (c *canvas) fill(polys [][]pt, p paint, opacity float32, figure bool) {
	c.fillClip(polys, nil, p, opacity, figure)
}

// fillClip is fill restricted to the inside of clip (when clip is not nil).
func (c *canvas) fillClip(polys, clip [][]pt, p paint, opacity float32, figure bool) {
	r, ok := c.rect(polys)
	if !ok {
		return
	}
	m := c.raster(&c.mask, r, polys)
	var cm *image.Alpha
	if clip != nil {
		cm = c.raster(&c.clip, r, clip)
	}
	w := r.Dx()
	for y := 0; y < r.Dy(); y++ {
		for x := 0; x < w; x++ {
			a := m.Pix[y*w+x]
			if a == 0 {
				continue
			}
			al := float32(a) / 255
			if cm != nil {
				al *= float32(cm.Pix[y*w+x]) / 255
				if al == 0 {
					continue
				}
			}
			al *= opacity
			px, py := x+r.Min.X, y+r.Min.Y
			i := py*c.w + px
			col := p(float64(px)+0.5, float64(py)+0.5)
			c.pix[i] = c.pix[i].lerp(col, al)
			if figure {
				c.fig[i] += (1 - c.fig[i]) * al
			}
		}
	}
}

// ribbon returns the outline of a stroke along pts with per-point widths
// (one width for all points when len(widths) == 1). Closed strokes give two
// loops of opposite orientation, so the union fill draws a ring.
func ribbon(pts []pt, widths []float64, closed bool) [][]pt {
	n := len(pts)
	if n < 2 {
		return nil
	}
	wd := func(i int) float64 {
		if len(widths) == 1 {
			return widths[0]
		}
		return widths[i]
	}
	left := make([]pt, n)
	right := make([]pt, n)
	for i := range pts {
		var a, b pt
		switch {
		case closed:
			a, b = pts[(i+n-1)%n], pts[(i+1)%n]
		case i == 0:
			a, b = pts[0], pts[1]
		case i == n-1:
			a, b = pts[n-2], pts[n-1]
		default:
			a, b = pts[i-1], pts[i+1]
		}
		d := b.sub(a)
		l := math.Hypot(d.x, d.y)
		if l == 0 {
			l = 1
		}
		nrm := pt{-d.y / l, d.x / l}.mul(wd(i) / 2)
		left[i] = pts[i].add(nrm)
		right[i] = pts[i].sub(nrm)
	}
	if closed {
		rev := make([]pt, n)
		for i := range right {
			rev[n-1-i] = right[i]
		}
		return [][]pt{left, rev}
	}
	poly := append([]pt{}, left...)
	for i := n - 1; i >= 0; i-- {
		poly = append(poly, right[i])
	}
	out := [][]pt{orient(poly)}
	// round caps
	out = append(out, circle(pts[0], wd(0)/2, 10), circle(pts[n-1], wd(n-1)/2, 10))
	return out
}

// orient makes a polygon counter-clockwise in screen coordinates (positive
// shoelace area), so that overlapping parts of a union add up.
func orient(p []pt) []pt {
	a := 0.0
	for i := range p {
		q, r := p[i], p[(i+1)%len(p)]
		a += q.x*r.y - r.x*q.y
	}
	if a < 0 {
		for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
			p[i], p[j] = p[j], p[i]
		}
	}
	return p
}

func circle(c pt, r float64, n int) []pt {
	return ellipse(c, r, r, 0, n)
}

// ellipse returns an n-gon approximating an ellipse rotated by rot.
func ellipse(c pt, rx, ry, rot float64, n int) []pt {
	out := make([]pt, n)
	cs, sn := math.Cos(rot), math.Sin(rot)
	for i := range out {
		t := 2 * math.Pi * float64(i) / float64(n)
		x, y := rx*math.Cos(t), ry*math.Sin(t)
		out[i] = pt{c.x + x*cs - y*sn, c.y + x*sn + y*cs}
	}
	return out
}

// bezier samples a cubic Bézier curve at n+1 points.
func bezier(a, b, c, d pt, n int) []pt {
	out := make([]pt, n+1)
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		u := 1 - t
		out[i] = a.mul(u * u * u).add(b.mul(3 * u * u * t)).add(c.mul(3 * u * t * t)).add(d.mul(t * t * t))
	}
	return out
}

// quad samples a quadratic Bézier curve at n+1 points.
func quad(a, b, c pt, n int) []pt {
	out := make([]pt, n+1)
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		u := 1 - t
		out[i] = a.mul(u * u).add(b.mul(2 * u * t)).add(c.mul(t * t))
	}
	return out
}

// toImage box-filters the canvas down by ss into an opaque RGBA image.
func (c *canvas) toImage(ss int) *image.RGBA {
	w, h := c.w/ss, c.h/ss
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	k := 1 / float32(ss*ss)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s rgb
			for dy := 0; dy < ss; dy++ {
				row := (y*ss + dy) * c.w
				for dx := 0; dx < ss; dx++ {
					p := c.pix[row+x*ss+dx]
					s.r += p.r
					s.g += p.g
					s.b += p.b
				}
			}
			o := img.PixOffset(x, y)
			img.Pix[o] = clamp8(float64(s.r*k) * 255)
			img.Pix[o+1] = clamp8(float64(s.g*k) * 255)
			img.Pix[o+2] = clamp8(float64(s.b*k) * 255)
			img.Pix[o+3] = 255
		}
	}
	return img
}
