package faceapi

import (
	"image"
	"math"
	"sort"
)

// Box is a rectangle in image pixels with fractional coordinates, as the
// detectors predict it.
type Box struct {
	X, Y, Width, Height float64
}

// Rect clips b to bounds and truncates it to whole pixels the way face-api's
// extractFaceTensors does before describing a face, so that
// img.SubImage(det.Box.Rect(img.Bounds())) is the crop face-api would pass to
// its recogniser. The result may be empty for boxes outside bounds.
func (b Box) Rect(bounds image.Rectangle) image.Rectangle {
	x := max(b.X, float64(bounds.Min.X))
	y := max(b.Y, float64(bounds.Min.Y))
	w := min(b.X+b.Width-x, float64(bounds.Max.X)-x)
	h := min(b.Y+b.Height-y, float64(bounds.Max.Y)-y)
	if w <= 0 || h <= 0 {
		return image.Rectangle{}
	}
	// x, y, width and height are each floored, as face-api does, rather
	// than the corners.
	fx, fy := int(math.Floor(x)), int(math.Floor(y))
	return image.Rect(fx, fy, fx+int(math.Floor(w)), fy+int(math.Floor(h)))
}

// IoU is the intersection over union of two boxes, 0 when they are disjoint.
func IoU(a, b Box) float64 {
	w := max(0, min(a.X+a.Width, b.X+b.Width)-max(a.X, b.X))
	h := max(0, min(a.Y+a.Height, b.Y+b.Height)-max(a.Y, b.Y))
	inter := w * h
	union := a.Width*a.Height + b.Width*b.Height - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// Detection is one face found by a detector.
type Detection struct {
	Box   Box     // in the pixel coordinates of the input image's bounds
	Score float64 // confidence in (0, 1)
}

// nonMaxSuppression returns the indices of the boxes kept by greedy
// non-maximum suppression: the best-scoring box is kept and every remaining
// box overlapping it by more than iouThreshold is dropped, until none are
// left. Kept indices come in descending score order.
func nonMaxSuppression(boxes []Box, scores []float64, iouThreshold float64, maxResults int) []int {
	order := make([]int, len(boxes))
	for i := range order {
		order[i] = i
	}
	// Ties go to the later box, as face-api's ascending sort-then-pop does.
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if scores[a] != scores[b] {
			return scores[a] > scores[b]
		}
		return a > b
	})
	var keep []int
	for len(order) > 0 && len(keep) < maxResults {
		best := order[0]
		keep = append(keep, best)
		rest := order[:0]
		for _, i := range order[1:] {
			if IoU(boxes[best], boxes[i]) <= iouThreshold {
				rest = append(rest, i)
			}
		}
		order = rest
	}
	return keep
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
