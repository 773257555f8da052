package faceapi

import (
	"encoding/json"
	"image"
	_ "image/jpeg"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/face0/face0/internal/testenv"
)

// The fixtures in testdata/ are written by scripts/faceapi-reference/generate.js
// from the face-api JavaScript reference; see README.md to regenerate them.

type fixtureBox struct {
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

type detectionFixture struct {
	Generator map[string]string  `json:"generator"`
	Options   map[string]float64 `json:"options"`
	Photos    []struct {
		Image      string `json:"image"`
		Width      int    `json:"width"`
		Height     int    `json:"height"`
		Detections []struct {
			Score float64    `json:"score"`
			Box   fixtureBox `json:"box"`
		} `json:"detections"`
	} `json:"photos"`
}

type recognitionFixture struct {
	Generator map[string]string `json:"generator"`
	Faces     []struct {
		Image      string    `json:"image"`
		Crop       rectJSON  `json:"crop"`
		Descriptor []float32 `json:"descriptor"`
	} `json:"faces"`
	Crops []struct {
		Source     map[string]any `json:"source"`
		Width      int            `json:"width"`
		Height     int            `json:"height"`
		RGB        []byte         `json:"rgbBase64"` // encoding/json decodes base64 into []byte
		Descriptor []float32      `json:"descriptor"`
	} `json:"crops"`
}

type rectJSON struct {
	X      int `json:"x"`
	Y      int `json:"y"`
	Width  int `json:"width"`
	Height int `json:"height"`
}

func (r rectJSON) rect() image.Rectangle {
	return image.Rect(r.X, r.Y, r.X+r.Width, r.Y+r.Height)
}

func readFixture(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (regenerate with scripts/faceapi-reference/generate.js)", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
}

var (
	photoMu    sync.Mutex
	photoCache = map[string]image.Image{}
)

// photo decodes a demo photo of the face-api package (e.g. "demo/sample1.jpg")
// once per test binary.
func photo(t testing.TB, rel string) image.Image {
	t.Helper()
	path := testenv.FaceAPI(t, filepath.FromSlash(rel))
	photoMu.Lock()
	defer photoMu.Unlock()
	if img, ok := photoCache[path]; ok {
		return img
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	photoCache[path] = img
	return img
}

func modelDir(t testing.TB) string {
	t.Helper()
	return testenv.FaceAPI(t, "model")
}

// compare returns the cosine similarity and the largest absolute difference
// of two vectors.
func compare(got, want []float32) (cos, maxAbs float64) {
	var dot, ng, nw float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		dot += g * w
		ng += g * g
		nw += w * w
		maxAbs = max(maxAbs, math.Abs(g-w))
	}
	return dot / math.Sqrt(ng*nw), maxAbs
}

// rgbImage wraps packed 8-bit RGB rows as an image.
func rgbImage(w, h int, rgb []byte) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		copy(img.Pix[4*i:], rgb[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img
}

// subImage crops img to r, keeping the photo's coordinates.
func subImage(t testing.TB, img image.Image, r image.Rectangle) image.Image {
	t.Helper()
	s, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	})
	if !ok {
		t.Fatalf("%T has no SubImage", img)
	}
	return s.SubImage(r)
}
