package faceapi

import (
	"fmt"
	"image"
	"math"
	"strings"
	"sync"
	"testing"
)

var (
	recognizerOnce sync.Once
	recognizer     *Recognizer
	recognizerErr  error
)

func loadRecognizer(t testing.TB) *Recognizer {
	t.Helper()
	dir := modelDir(t)
	recognizerOnce.Do(func() { recognizer, recognizerErr = LoadRecognizer(dir) })
	if recognizerErr != nil {
		t.Fatal(recognizerErr)
	}
	return recognizer
}

// TestDescribeFixedCrops feeds the exact pixels face-api saw, so any
// difference comes from the network port itself (and float summation order).
func TestDescribeFixedCrops(t *testing.T) {
	r := loadRecognizer(t)
	var fx recognitionFixture
	readFixture(t, "face_recognition.json", &fx)
	if len(fx.Crops) == 0 {
		t.Fatal("face_recognition.json has no crops")
	}
	for _, c := range fx.Crops {
		t.Run(fmt.Sprintf("%dx%d", c.Width, c.Height), func(t *testing.T) {
			got, err := r.Describe(rgbImage(c.Width, c.Height, c.RGB))
			if err != nil {
				t.Fatal(err)
			}
			cos, maxAbs := compare(got, c.Descriptor)
			t.Logf("%v: cosine %.7f, max abs diff %.2g", c.Source, cos, maxAbs)
			// The JS reference runs XNNPACK in float32 with another summation
			// order; everything beyond that would show as far larger errors.
			if cos < 0.99999 || maxAbs > 1e-5 {
				t.Errorf("descriptor differs from face-api: cosine %.7f (want >= 0.99999), max abs diff %.2g (want <= 1e-5)", cos, maxAbs)
			}
		})
	}
}

// TestDescribeDetectedFaces crops the faces the JS tiny detector found from
// photos decoded by Go's image/jpeg, whose pixels differ from the reference's
// jpeg-js by up to a few levels.
func TestDescribeDetectedFaces(t *testing.T) {
	r := loadRecognizer(t)
	var fx recognitionFixture
	readFixture(t, "face_recognition.json", &fx)
	worst := 1.0
	descs := make([][]float32, len(fx.Faces))
	for i, f := range fx.Faces {
		img := photo(t, f.Image)
		got, err := r.Describe(subImage(t, img, f.Crop.rect()))
		if err != nil {
			t.Fatal(err)
		}
		descs[i] = got
		cos, maxAbs := compare(got, f.Descriptor)
		worst = min(worst, cos)
		t.Logf("face %d %s %v: cosine %.6f, max abs diff %.2g", i, f.Image, f.Crop.rect(), cos, maxAbs)
		if cos < 0.99 {
			t.Errorf("face %d %s %v: cosine %.6f with face-api, want >= 0.99", i, f.Image, f.Crop.rect(), cos)
		}
	}
	t.Logf("%d faces, worst cosine %.6f", len(fx.Faces), worst)

	// Beyond matching the reference, the descriptors must be useful: a face
	// re-cropped 5% tighter stays closer to itself than to anyone else in the
	// photo. (Unaligned detector crops, as here, are less discriminative than
	// the landmark-aligned faces face-api normally describes, so the usual 0.6
	// threshold does not separate all of them.)
	for i, f := range fx.Faces {
		c := f.Crop.rect()
		tight, err := r.Describe(subImage(t, photo(t, f.Image), c.Inset(c.Dx()/20)))
		if err != nil {
			t.Fatal(err)
		}
		self := Distance(descs[i], tight)
		for j := range descs {
			if j != i && fx.Faces[j].Image == f.Image {
				if other := Distance(descs[i], descs[j]); other <= self {
					t.Errorf("face %d of %s is %.3f from its tighter crop but %.3f from face %d", i, f.Image, self, other, j)
				}
			}
		}
	}
}

func TestDescribeTensor(t *testing.T) {
	r := loadRecognizer(t)
	var fx recognitionFixture
	readFixture(t, "face_recognition.json", &fx)
	c := fx.Crops[0]
	if c.Width != RecognizerInputSize || c.Height != RecognizerInputSize {
		t.Fatalf("first fixture crop is %dx%d, want the unresized %d square", c.Width, c.Height, RecognizerInputSize)
	}
	in := &Tensor{Shape: []int{150, 150, 3}, Data: make([]float32, len(c.RGB))}
	for i, v := range c.RGB {
		in.Data[i] = float32(v)
	}
	got, err := r.DescribeTensor(in)
	if err != nil {
		t.Fatal(err)
	}
	viaImage, err := r.Describe(rgbImage(c.Width, c.Height, c.RGB))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != viaImage[i] {
			t.Fatalf("DescribeTensor and Describe differ at %d: %v vs %v", i, got[i], viaImage[i])
		}
	}

	for _, tc := range []struct {
		name string
		in   *Tensor
	}{
		{"nil", nil},
		{"wrong size", &Tensor{Shape: []int{149, 150, 3}, Data: make([]float32, 149*150*3)}},
		{"wrong rank", &Tensor{Shape: []int{150 * 150, 3}, Data: make([]float32, 150*150*3)}},
		{"short data", &Tensor{Shape: []int{150, 150, 3}, Data: make([]float32, 10)}},
	} {
		if _, err := r.DescribeTensor(tc.in); err == nil {
			t.Errorf("%s: DescribeTensor succeeded, want an error", tc.name)
		}
	}
	if _, err := r.Describe(image.NewRGBA(image.Rectangle{})); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Describe(empty image) error = %v, want one saying it is empty", err)
	}
}

func TestDistance(t *testing.T) {
	if d := Distance([]float32{0, 3}, []float32{4, 0}); math.Abs(d-5) > 1e-12 {
		t.Errorf("Distance = %v, want 5", d)
	}
}

func BenchmarkDescribe(b *testing.B) {
	r := loadRecognizer(b)
	img := subImage(b, photo(b, "demo/sample1.jpg"), image.Rect(776, 445, 1088, 700))
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Describe(img); err != nil {
			b.Fatal(err)
		}
	}
}
