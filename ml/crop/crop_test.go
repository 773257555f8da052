package crop

import (
	"image"
	"image/color"
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func nearBox(a, b Box) bool {
	return near(a.X1, b.X1) && near(a.Y1, b.Y1) && near(a.X2, b.X2) && near(a.Y2, b.Y2)
}

func TestExpand(t *testing.T) {
	tests := []struct {
		name string
		box  Box
		s    Scaling
		want Box
	}{
		// The calibration point: a 160 px face gets the paper's pixels.
		{"160px proportional", Box{100, 100, 260, 260}, Proportional, Box{90, 67, 270, 275}},
		{"160px absolute", Box{100, 100, 260, 260}, Absolute, Box{90, 67, 270, 275}},
		// Twice the size, twice the margins.
		{"320px proportional", Box{0, 0, 320, 320}, Proportional, Box{-20, -66, 340, 350}},
		{"320px absolute", Box{0, 0, 320, 320}, Absolute, Box{-10, -33, 330, 335}},
		// A 40x160 box has size 80 (geometric mean): half the margins on
		// both axes, not a quarter on one and the full on the other.
		{"tall box", Box{0, 0, 40, 160}, Proportional, Box{-5, -16.5, 45, 167.5}},
	}
	for _, tt := range tests {
		if got := Expand(tt.box, Paper, tt.s); !nearBox(got, tt.want) {
			t.Errorf("%s: Expand(%v) = %v, want %v", tt.name, tt.box, got, tt.want)
		}
	}
}

func TestSquareAndRegion(t *testing.T) {
	tests := []struct {
		name string
		in   Box
		want Box
	}{
		{"tall grows sideways", Box{10, 0, 30, 40}, Box{0, 0, 40, 40}},
		{"wide grows up and down", Box{0, 10, 40, 30}, Box{0, 0, 40, 40}},
		{"square unchanged", Box{5, 5, 15, 15}, Box{5, 5, 15, 15}},
	}
	for _, tt := range tests {
		if got := Square(tt.in); !nearBox(got, tt.want) {
			t.Errorf("%s: Square(%v) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
	// The whole rule on the calibration box: 180x208 expanded box, centre
	// (180, 171), squared to 208.
	got := Region(Box{100, 100, 260, 260}, Paper, Proportional)
	if want := (Box{76, 67, 284, 275}); !nearBox(got, want) {
		t.Errorf("Region = %v, want %v", got, want)
	}
	// Mirroring the box mirrors the region, because left and right margins
	// are equal: a flipped photo gives a flipped crop.
	b := Box{100, 50, 180, 150}
	if a, f := Region(b, Paper, Proportional).FlipX(1000), Region(b.FlipX(1000), Paper, Proportional); !nearBox(a, f) {
		t.Errorf("flipped region %v != region of flipped box %v", f, a)
	}
}

func TestBoxHelpers(t *testing.T) {
	a := Box{0, 0, 10, 10}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"area", a.Area(), 100},
		{"size", Box{0, 0, 4, 16}.Size(), 8},
		{"iou self", a.IoU(a), 1},
		{"iou half", a.IoU(Box{5, 0, 15, 10}), 50.0 / 150},
		{"iou disjoint", a.IoU(Box{20, 20, 30, 30}), 0},
		{"area invalid", Box{5, 5, 1, 1}.Area(), 0},
		{"nan invalid", Box{math.NaN(), 0, 1, 1}.Area(), 0},
	}
	for _, tt := range tests {
		if !near(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if got := a.Shift(1, 2).Scale(2); !nearBox(got, Box{2, 4, 22, 24}) {
		t.Errorf("Shift/Scale = %v", got)
	}
}

// quadrants is a 100x100 image: red top left, green top right, blue bottom
// left, white bottom right.
func quadrants() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 100, 100))
	for y := 0; y < 100; y++ {
		for x := 0; x < 100; x++ {
			c := color.NRGBA{255, 255, 255, 255}
			switch {
			case x < 50 && y < 50:
				c = color.NRGBA{255, 0, 0, 255}
			case y < 50:
				c = color.NRGBA{0, 255, 0, 255}
			case x < 50:
				c = color.NRGBA{0, 0, 255, 255}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func TestExtract(t *testing.T) {
	src := quadrants()
	tests := []struct {
		name   string
		region Box
		size   int
		// probes: output pixel -> expected colour
		probes map[image.Point]color.NRGBA
	}{
		{"whole image shrunk", Box{0, 0, 100, 100}, 10, map[image.Point]color.NRGBA{
			{1, 1}: {255, 0, 0, 255}, {8, 1}: {0, 255, 0, 255}, {1, 8}: {0, 0, 255, 255}, {8, 8}: {255, 255, 255, 255}}},
		{"exact size copies", Box{40, 40, 60, 60}, 20, map[image.Point]color.NRGBA{
			{0, 0}: {255, 0, 0, 255}, {19, 0}: {0, 255, 0, 255}, {19, 19}: {255, 255, 255, 255}}},
		{"outside is black", Box{-50, -50, 50, 50}, 20, map[image.Point]color.NRGBA{
			{2, 2}: {0, 0, 0, 255}, {17, 2}: {0, 0, 0, 255}, {17, 17}: {255, 0, 0, 255}}},
		{"sub-image bounds respected", Box{50, 50, 150, 150}, 10, map[image.Point]color.NRGBA{
			{1, 1}: {255, 255, 255, 255}, {8, 8}: {0, 0, 0, 255}}},
	}
	for _, tt := range tests {
		got, err := Extract(src, tt.region, tt.size)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if b := got.Bounds(); b.Dx() != tt.size || b.Dy() != tt.size || b.Min != (image.Point{}) {
			t.Fatalf("%s: bounds %v, want %dx%d at 0,0", tt.name, b, tt.size, tt.size)
		}
		for p, want := range tt.probes {
			if c := got.NRGBAAt(p.X, p.Y); c != want {
				t.Errorf("%s: pixel %v = %v, want %v", tt.name, p, c, want)
			}
		}
	}
	// A sub-image keeps its own coordinates: region (50,50)-(100,100) of
	// the bottom-right quadrant view is all white.
	sub := src.SubImage(image.Rect(50, 50, 100, 100))
	got, err := Extract(sub, Box{50, 50, 100, 100}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.NRGBAAt(2, 2); c != (color.NRGBA{255, 255, 255, 255}) {
		t.Errorf("sub-image crop pixel = %v, want white", c)
	}
}

func TestExtractErrors(t *testing.T) {
	src := quadrants()
	tests := []struct {
		name   string
		region Box
		size   int
		want   string
	}{
		{"empty region", Box{10, 10, 10, 20}, 16, "empty or not finite"},
		{"nan region", Box{math.NaN(), 0, 10, 10}, 16, "empty or not finite"},
		{"zero size", Box{0, 0, 10, 10}, 0, "must be positive"},
		{"huge region", Box{0, 0, 1e6, 1e6}, 16, "larger than"},
	}
	for _, tt := range tests {
		_, err := Extract(src, tt.region, tt.size)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
