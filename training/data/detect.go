package data

import (
	"fmt"
	"image"
	"math"
	"path/filepath"
	"sync"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/crop"
	"github.com/face0/face0/ml/faceapi"
)

// FaceAPISpace is the embedding space of the detect mode: face-api's 128-d
// descriptor, as the face pack's EmbedFace names it.
const (
	FaceAPISpace = "faceapi-128"
	FaceAPIDim   = 128
)

// MinFaceSize is the smallest face kept, sqrt of the box area in pixels
// (the paper keeps faces over 20 px).
const MinFaceSize = 20

// faceEmbedder is the detect mode: face-api's SSD MobileNetV1 finds the
// largest face, the Face0 crop (the paper's 10/33/15 px margins, scaled to
// the face, squared, 160 px; ml/crop) is cut out, and face-api's
// recogniser describes it, averaged with its mirror image exactly as the
// face pack's EmbedFace does, so training and sampling embeddings agree.
type faceEmbedder struct {
	mu  sync.Mutex // the models are not documented as safe for concurrent use
	ssd *faceapi.SSDMobileNetV1
	rec *faceapi.Recognizer
}

// FaceAPIModelDir finds face-api's model/ folder: dir if given, else
// <models>/face-api/model when models is given and has it, else where
// scripts/setup.sh unpacks the npm package.
func FaceAPIModelDir(dir, models string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if models != "" {
		d := filepath.Join(models, "face-api", "model")
		if fileExists(filepath.Join(d, "ssd_mobilenetv1_model-weights_manifest.json")) {
			return d, nil
		}
	}
	pkg, err := assets.FaceAPIDir()
	if err != nil {
		return "", fmt.Errorf("data: the detect mode needs face-api's weights: %w", err)
	}
	return filepath.Join(pkg, "model"), nil
}

func newFaceEmbedder(modelDir string) (*faceEmbedder, error) {
	ssd, err := faceapi.LoadSSDMobileNetV1(modelDir)
	if err != nil {
		return nil, fmt.Errorf("data: face detector: %w", err)
	}
	rec, err := faceapi.LoadRecognizer(modelDir)
	if err != nil {
		return nil, fmt.Errorf("data: face recogniser: %w", err)
	}
	return &faceEmbedder{ssd: ssd, rec: rec}, nil
}

// embed returns the descriptor of img's largest face, or ok false when no
// face of at least MinFaceSize px is found.
func (f *faceEmbedder) embed(img image.Image) (vec []float32, ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dets, err := f.ssd.Detect(img, faceapi.SSDOptions{})
	if err != nil {
		return nil, false, err
	}
	best, area := -1, 0.0
	for i, d := range dets {
		a := d.Box.Width * d.Box.Height
		if math.Sqrt(a) >= MinFaceSize && a > area {
			best, area = i, a
		}
	}
	if best < 0 {
		return nil, false, nil
	}
	b := dets[best].Box
	box := crop.Box{X1: b.X, Y1: b.Y, X2: b.X + b.Width, Y2: b.Y + b.Height}
	c, err := crop.Extract(img, crop.Region(box, crop.Paper, crop.Proportional), 160)
	if err != nil {
		return nil, false, err
	}
	a, err := f.rec.Describe(c)
	if err != nil {
		return nil, false, err
	}
	m, err := f.rec.Describe(mirrorX(c))
	if err != nil {
		return nil, false, err
	}
	for i := range a {
		a[i] = (a[i] + m[i]) / 2
	}
	return a, true, nil
}

func mirrorX(img *image.NRGBA) *image.NRGBA {
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		src := img.Pix[y*img.Stride:]
		dst := out.Pix[y*out.Stride:]
		w := b.Dx()
		for x := range w {
			copy(dst[x*4:x*4+4], src[(w-1-x)*4:(w-1-x)*4+4])
		}
	}
	return out
}
