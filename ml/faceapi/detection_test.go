package faceapi

import (
	"image"
	"math"
	"slices"
	"testing"
)

func TestBoxRect(t *testing.T) {
	bounds := image.Rect(0, 0, 100, 80)
	for _, tc := range []struct {
		box  Box
		want image.Rectangle
	}{
		{Box{10.7, 20.2, 30.5, 40.9}, image.Rect(10, 20, 40, 60)}, // x, y, w, h floored separately
		{Box{-5.5, -3, 20, 10}, image.Rect(0, 0, 14, 7)},          // clipped at the top left
		{Box{90.2, 70.9, 50, 50}, image.Rect(90, 70, 99, 79)},     // clipped at the bottom right
		{Box{120, 10, 5, 5}, image.Rectangle{}},                   // outside
		{Box{10, 10, -3, 5}, image.Rectangle{}},                   // degenerate
	} {
		if got := tc.box.Rect(bounds); got != tc.want {
			t.Errorf("%+v.Rect(%v) = %v, want %v", tc.box, bounds, got, tc.want)
		}
	}
	// Bounds not at the origin clip at their own edges.
	if got := (Box{5, 5, 20, 20}).Rect(image.Rect(10, 10, 50, 50)); got != image.Rect(10, 10, 25, 25) {
		t.Errorf("offset bounds: got %v", got)
	}
}

func TestIoU(t *testing.T) {
	for _, tc := range []struct {
		a, b Box
		want float64
	}{
		{Box{0, 0, 10, 10}, Box{0, 0, 10, 10}, 1},
		{Box{0, 0, 10, 10}, Box{5, 0, 10, 10}, 50.0 / 150},
		{Box{0, 0, 10, 10}, Box{20, 20, 5, 5}, 0},
		{Box{0, 0, 0, 0}, Box{0, 0, 0, 0}, 0},
	} {
		if got := IoU(tc.a, tc.b); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("IoU(%+v, %+v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestNonMaxSuppression(t *testing.T) {
	boxes := []Box{
		{0, 0, 10, 10},
		{1, 0, 10, 10}, // overlaps 0 by IoU 0.82
		{50, 50, 10, 10},
		{0, 5, 10, 10}, // overlaps 1 by IoU 0.29
	}
	scores := []float64{0.8, 0.9, 0.7, 0.6}
	for _, tc := range []struct {
		iou  float64
		max  int
		want []int
	}{
		{0.4, 10, []int{1, 2, 3}},
		{0.25, 10, []int{1, 2}},
		{0.9, 10, []int{1, 0, 2, 3}},
		{0.9, 2, []int{1, 0}},
	} {
		if got := nonMaxSuppression(boxes, scores, tc.iou, tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("nonMaxSuppression(iou %v, max %d) = %v, want %v", tc.iou, tc.max, got, tc.want)
		}
	}
}
