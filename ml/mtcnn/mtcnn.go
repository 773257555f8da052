// Package mtcnn is a pure-Go port of the MTCNN face detector (Zhang et al.,
// "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
// Networks", 2016) as implemented by facenet-pytorch, the detector the Face0
// paper uses. It reproduces that implementation's detections, probabilities
// and five-point landmarks step for step (see README.md for the rules and the
// measured agreement), using the weights in the project's shared
// mtcnn.safetensors.
package mtcnn

import (
	"errors"
	"fmt"
	"image"
	"math"

	"github.com/face0/face0/ml/safetensors"
)

// Face is one detection, in pixels of the input image.
type Face struct {
	// Box is x1, y1, x2, y2. It is neither squared nor clipped to the image.
	Box [4]float32
	// Prob is O-Net's face probability.
	Prob float32
	// Landmarks are (x, y) of the left eye, right eye, nose tip, left mouth
	// corner and right mouth corner as seen in the image (the first eye and
	// mouth corner are the subject's right ones).
	Landmarks [5][2]float32
}

// Detector holds the three networks. It is immutable after Load, so one
// Detector may serve any number of concurrent Detect calls.
type Detector struct {
	p *pnet
	r *rnet
	o *onet
}

// Load reads the P-Net, R-Net and O-Net weights from a safetensors file (the
// project's shared mtcnn/mtcnn.safetensors). It fails naming the first
// missing or mis-shaped tensor.
func Load(path string) (*Detector, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mtcnn: %w", err)
	}
	w := &weights{f: f}
	d := &Detector{p: loadPNet(w), r: loadRNet(w), o: loadONet(w)}
	if w.err != nil {
		return nil, fmt.Errorf("mtcnn: %s: %w", path, w.err)
	}
	return d, nil
}

// Option changes a detection setting; the defaults are the reference's.
type Option func(*config)

type config struct {
	minFace    float64
	thresholds [3]float32
	factor     float64
}

func defaults() config {
	return config{minFace: 20, thresholds: [3]float32{0.6, 0.7, 0.7}, factor: 0.709}
}

// MinFaceSize sets the smallest face side, in pixels, the pyramid looks for
// (default 20). Smaller values add pyramid levels and cost time.
func MinFaceSize(px float64) Option { return func(c *config) { c.minFace = px } }

// Thresholds sets the score each stage must reach: P-Net (>=), R-Net and
// O-Net (>) (default 0.6, 0.7, 0.7).
func Thresholds(pnet, rnet, onet float32) Option {
	return func(c *config) { c.thresholds = [3]float32{pnet, rnet, onet} }
}

// Factor sets the scale step between pyramid levels (default 0.709, which
// halves the area per level).
func Factor(f float64) Option { return func(c *config) { c.factor = f } }

func (c config) validate() error {
	if !(c.minFace > 0) || math.IsInf(c.minFace, 0) {
		return fmt.Errorf("mtcnn: MinFaceSize must be a positive number of pixels, got %v", c.minFace)
	}
	if !(c.factor > 0 && c.factor < 1) {
		return fmt.Errorf("mtcnn: Factor must be between 0 and 1 (exclusive), got %v", c.factor)
	}
	for i, t := range c.thresholds {
		if !(t >= 0 && t <= 1) {
			return fmt.Errorf("mtcnn: threshold %d must be a probability in [0, 1], got %v", i+1, t)
		}
	}
	return nil
}

// Detect finds the faces in img, sorted by probability, highest first.
// An image with no face gives an empty result and no error.
func (d *Detector) Detect(img image.Image, opts ...Option) ([]Face, error) {
	return d.detect(img, nil, opts...)
}

func (d *Detector) detect(img image.Image, tr *trace, opts ...Option) ([]Face, error) {
	if d == nil || d.p == nil {
		return nil, errors.New("mtcnn: Detector not loaded; create it with mtcnn.Load")
	}
	if img == nil {
		return nil, errors.New("mtcnn: nil image")
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := img.Bounds()
	if b.Dx() < 1 || b.Dy() < 1 {
		return nil, fmt.Errorf("mtcnn: image is empty (%dx%d)", b.Dx(), b.Dy())
	}
	return d.run(newRGBImage(img), cfg, tr), nil
}
