package faceapi

import (
	"image"
	"strings"
	"sync"
	"testing"
)

var (
	ssdOnce sync.Once
	ssd     *SSDMobileNetV1
	ssdErr  error
)

func loadSSD(t testing.TB) *SSDMobileNetV1 {
	t.Helper()
	dir := modelDir(t)
	ssdOnce.Do(func() { ssd, ssdErr = LoadSSDMobileNetV1(dir) })
	if ssdErr != nil {
		t.Fatal(ssdErr)
	}
	return ssd
}

func TestSSDDetectMatchesFaceAPI(t *testing.T) {
	d := loadSSD(t)
	var fx detectionFixture
	readFixture(t, "ssd_mobilenetv1.json", &fx)
	if fx.Options["minConfidence"] != ssdDefaultConfidence || int(fx.Options["maxResults"]) != ssdDefaultMaxResults {
		t.Errorf("fixture options %v are not the documented defaults", fx.Options)
	}
	for _, p := range fx.Photos {
		t.Run(strings.TrimPrefix(p.Image, "demo/"), func(t *testing.T) {
			got, err := d.Detect(photo(t, p.Image), SSDOptions{}) // the defaults
			if err != nil {
				t.Fatal(err)
			}
			iou, ds := matchDetections(t, got, p.Detections)
			t.Logf("%d faces, worst IoU %.5f, worst score diff %.2g", len(got), iou, ds)
		})
	}
}

func TestSSDDetectOptions(t *testing.T) {
	d := loadSSD(t)
	img := photo(t, "demo/sample4.jpg")
	one, err := d.Detect(img, SSDOptions{MaxResults: 1})
	if err != nil || len(one) != 1 {
		t.Fatalf("Detect(MaxResults 1) = %v, %v; want one face", one, err)
	}
	all, err := d.Detect(img, SSDOptions{MinConfidence: 0.3})
	if err != nil || len(all) < 2 || all[0] != one[0] {
		t.Fatalf("Detect(MinConfidence 0.3) = %v, %v; want several faces, best first", all, err)
	}
	for _, o := range []SSDOptions{{MinConfidence: 1}, {MinConfidence: -1}, {MaxResults: -1}} {
		if _, err := d.Detect(img, o); err == nil {
			t.Errorf("Detect(%+v) succeeded, want an error", o)
		}
	}
	if _, err := d.Detect(image.NewGray(image.Rectangle{}), SSDOptions{}); err == nil {
		t.Error("Detect(empty image) succeeded, want an error")
	}
}

func BenchmarkSSDDetect1920(b *testing.B) {
	d := loadSSD(b)
	img := photo(b, "demo/sample1.jpg") // 1920x1280
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Detect(img, SSDOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
