package faceapi

import (
	"image"
	"math"
	"strings"
	"sync"
	"testing"
)

var (
	tinyOnce sync.Once
	tiny     *TinyFaceDetector
	tinyErr  error
)

func loadTiny(t testing.TB) *TinyFaceDetector {
	t.Helper()
	dir := modelDir(t)
	tinyOnce.Do(func() { tiny, tinyErr = LoadTinyFaceDetector(dir) })
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tiny
}

// matchDetections checks got against the reference want: the same number of
// faces, each reference box matched by a distinct detection with IoU >= 0.9
// and a close score. It returns the worst IoU and largest score difference.
func matchDetections(t *testing.T, got []Detection, want detectionFixtureDetections) (worstIoU, worstScore float64) {
	t.Helper()
	worstIoU = 1
	if len(got) != len(want) {
		t.Errorf("found %d faces, face-api found %d: got %+v", len(got), len(want), got)
	}
	used := make([]bool, len(got))
	for i, w := range want {
		wb := Box(w.Box)
		best, bestIoU := -1, 0.0
		for j, g := range got {
			if iou := IoU(g.Box, wb); !used[j] && iou > bestIoU {
				best, bestIoU = j, iou
			}
		}
		if best < 0 {
			t.Errorf("face-api face %d %+v (score %.3f): no match", i, wb, w.Score)
			worstIoU = 0
			continue
		}
		used[best] = true
		ds := math.Abs(got[best].Score - w.Score)
		worstIoU, worstScore = min(worstIoU, bestIoU), max(worstScore, ds)
		if bestIoU < 0.9 || ds > 0.02 {
			t.Errorf("face-api face %d %+v score %.4f: best match %+v score %.4f, IoU %.4f (want >= 0.9), score diff %.4f (want <= 0.02)",
				i, wb, w.Score, got[best].Box, got[best].Score, bestIoU, ds)
		}
	}
	return worstIoU, worstScore
}

type detectionFixtureDetections = []struct {
	Score float64    `json:"score"`
	Box   fixtureBox `json:"box"`
}

func TestTinyDetectMatchesFaceAPI(t *testing.T) {
	d := loadTiny(t)
	var fx detectionFixture
	readFixture(t, "tiny_face_detector.json", &fx)
	opts := TinyOptions{InputSize: int(fx.Options["inputSize"]), ScoreThreshold: fx.Options["scoreThreshold"]}
	if opts != (TinyOptions{InputSize: tinyDefaultInputSize, ScoreThreshold: tinyDefaultScoreThreshold}) {
		t.Errorf("fixture options %+v are not the documented defaults", opts)
	}
	for _, p := range fx.Photos {
		t.Run(strings.TrimPrefix(p.Image, "demo/"), func(t *testing.T) {
			img := photo(t, p.Image)
			if b := img.Bounds(); b.Dx() != p.Width || b.Dy() != p.Height {
				t.Fatalf("photo is %v, fixture says %dx%d", b, p.Width, p.Height)
			}
			got, err := d.Detect(img, TinyOptions{}) // the defaults
			if err != nil {
				t.Fatal(err)
			}
			iou, ds := matchDetections(t, got, p.Detections)
			t.Logf("%d faces, worst IoU %.5f, worst score diff %.2g", len(got), iou, ds)
		})
	}
}

// TestTinyDetectSubImage checks boxes come back in the coordinates of the
// image's bounds, not relative to its corner.
func TestTinyDetectSubImage(t *testing.T) {
	d := loadTiny(t)
	img := photo(t, "demo/sample2.jpg")
	whole, err := d.Detect(img, TinyOptions{})
	if err != nil || len(whole) == 0 {
		t.Fatalf("Detect = %v, %v; want a face", whole, err)
	}
	r := whole[0].Box.Rect(img.Bounds()).Inset(-200).Intersect(img.Bounds())
	part, err := d.Detect(subImage(t, img, r), TinyOptions{})
	if err != nil || len(part) == 0 {
		t.Fatalf("Detect(sub-image %v) = %v, %v; want a face", r, part, err)
	}
	if iou := IoU(part[0].Box, whole[0].Box); iou < 0.7 {
		t.Errorf("face in sub-image %v at %+v, in whole image at %+v (IoU %.3f)", r, part[0].Box, whole[0].Box, iou)
	}
}

func TestTinyDetectOptions(t *testing.T) {
	d := loadTiny(t)
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for _, tc := range []struct {
		opts TinyOptions
		ok   bool
	}{
		{TinyOptions{}, true},
		{TinyOptions{InputSize: 128, ScoreThreshold: 0.3}, true},
		{TinyOptions{InputSize: 100}, false},
		{TinyOptions{InputSize: -32}, false},
		{TinyOptions{ScoreThreshold: 1}, false},
		{TinyOptions{ScoreThreshold: -0.5}, false},
	} {
		_, err := d.Detect(img, tc.opts)
		if (err == nil) != tc.ok {
			t.Errorf("Detect(%+v) error = %v, want ok = %v", tc.opts, err, tc.ok)
		}
	}
	if _, err := d.Detect(image.NewRGBA(image.Rectangle{}), TinyOptions{}); err == nil {
		t.Error("Detect(empty image) succeeded, want an error")
	}
}

func BenchmarkTinyDetect1920(b *testing.B) {
	d := loadTiny(b)
	img := photo(b, "demo/sample1.jpg") // 1920x1280
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Detect(img, TinyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
