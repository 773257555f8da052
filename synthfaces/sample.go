package synthfaces

import (
	"image"
	"image/draw"
)

// Sample is one generated image with everything known about it.
type Sample struct {
	Identity  Identity
	Image     int // index of the image within its identity
	Scene     Scene
	Variation Variation
	Caption   string
	Pixels    *image.RGBA
	FaceBox   image.Rectangle
}

// RenderSample draws image j of identity id of the dataset with the given seed.
func RenderSample(seed uint64, id, j int, o RenderOptions) Sample {
	a := NewIdentity(seed, id)
	s, v := NewScene(seed, id, j)
	img, box := Render(a, s, v, o)
	return Sample{Identity: a, Image: j, Scene: s, Variation: v, Caption: Caption(s), Pixels: img, FaceBox: box}
}

// Grid renders identities ids (one per row) × perID images into one image
// with a 2-pixel gutter, for a quick visual check.
func Grid(seed uint64, ids []int, perID int, o RenderOptions) *image.RGBA {
	o = o.norm()
	const gap = 2
	s := o.Size
	out := image.NewRGBA(image.Rect(0, 0, perID*(s+gap)-gap, len(ids)*(s+gap)-gap))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	for r, id := range ids {
		for j := 0; j < perID; j++ {
			sm := RenderSample(seed, id, j, o)
			p := image.Pt(j*(s+gap), r*(s+gap))
			draw.Draw(out, image.Rectangle{p, p.Add(image.Pt(s, s))}, sm.Pixels, image.Point{}, draw.Src)
		}
	}
	return out
}
