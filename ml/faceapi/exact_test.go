package faceapi

import (
	"image"
	"math"
	"testing"
)

// TestDetectorsOnExactPixels runs both detectors on an image whose pixels are
// embedded in the fixture, so the only differences left are float32
// summation order: boxes and scores must agree far more tightly than on the
// photos, where Go's and jpeg-js's JPEG decoders disagree by a few levels.
func TestDetectorsOnExactPixels(t *testing.T) {
	var fx struct {
		Width  int                        `json:"width"`
		Height int                        `json:"height"`
		RGB    []byte                     `json:"rgbBase64"`
		Tiny   detectionFixtureDetections `json:"tinyFaceDetector"`
		SSD    detectionFixtureDetections `json:"ssdMobilenetv1"`
	}
	readFixture(t, "detector_exact.json", &fx)
	img := rgbImage(fx.Width, fx.Height, fx.RGB)
	for _, tc := range []struct {
		name   string
		detect func(image.Image) ([]Detection, error)
		want   detectionFixtureDetections
	}{
		{"tiny", func(img image.Image) ([]Detection, error) { return loadTiny(t).Detect(img, TinyOptions{}) }, fx.Tiny},
		{"ssd", func(img image.Image) ([]Detection, error) { return loadSSD(t).Detect(img, SSDOptions{}) }, fx.SSD},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.detect(img)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) || len(got) == 0 {
				t.Fatalf("found %v, face-api found %v", got, tc.want)
			}
			for i, w := range tc.want {
				iou, ds := IoU(got[i].Box, Box(w.Box)), math.Abs(got[i].Score-w.Score)
				t.Logf("face %d: IoU %.7f, score diff %.2g", i, iou, ds)
				if iou < 0.9999 || ds > 1e-4 {
					t.Errorf("face %d: got %+v score %.6f, face-api %+v score %.6f: IoU %.7f (want >= 0.9999), score diff %.2g (want <= 1e-4)",
						i, got[i].Box, got[i].Score, w.Box, w.Score, iou, ds)
				}
			}
		})
	}
}
