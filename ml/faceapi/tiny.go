package faceapi

import (
	"fmt"
	"image"
	"math"
)

// TinyOptions are the tiny detector's settings. Zero fields take face-api's
// TinyFaceDetectorOptions defaults.
type TinyOptions struct {
	// InputSize is the side of the square the image is scaled to; a multiple
	// of 32. Default 416. Larger finds smaller faces, slower (cost grows with
	// its square); face-api suggests 128 to 608.
	InputSize int
	// ScoreThreshold drops detections scoring at or below it, in (0, 1).
	// Default 0.5.
	ScoreThreshold float64
}

const (
	tinyDefaultInputSize      = 416
	tinyDefaultScoreThreshold = 0.5
	tinyIoUThreshold          = 0.4 // face-api's tinyFaceDetector IOU_THRESHOLD
	tinyCellOutputs           = 5   // x, y, w, h, score per anchor: one class, no class scores
)

// tinyAnchors are the box priors (width, height in grid cells) of
// face-api's tiny face detector.
var tinyAnchors = [...][2]float64{
	{1.603231, 2.094468},
	{6.041143, 7.080126},
	{2.882459, 3.518061},
	{4.266906, 5.178857},
	{9.041765, 10.66308},
}

// tinyMeanRGB is subtracted from the [0, 255] input before scaling by 1/255.
var tinyMeanRGB = [3]float32{117.001, 114.697, 97.404}

// TinyFaceDetector is face-api's tiny face detector: a Tiny-YOLOv2-style
// single-shot detector with a small MobileNet-like backbone (one 3x3
// convolution, five depthwise-separable convolutions with max pooling) and
// five anchors on a 32-pixel grid. It is fast but misses small faces and
// places boxes less tightly than SsdMobilenetv1.
//
// A TinyFaceDetector is immutable and safe for concurrent use.
type TinyFaceDetector struct {
	conv0 *conv        // 3x3, 3 -> 16
	sep   [5]separable // conv1 ... conv5: 16 -> 32 -> ... -> 512
	conv8 *conv        // 1x1, 512 -> 25 (5 anchors x 5 outputs)
}

// separable is a depthwise 3x3 followed by a pointwise 1x1 convolution with
// bias.
type separable struct {
	dw *depthwise
	pw *conv
}

// LoadTinyFaceDetector reads tiny_face_detector_model from modelDir
// (face-api's model/ folder).
func LoadTinyFaceDetector(modelDir string) (*TinyFaceDetector, error) {
	w, err := ReadWeights(modelDir, "tiny_face_detector_model")
	if err != nil {
		return nil, err
	}
	return NewTinyFaceDetector(w)
}

// NewTinyFaceDetector builds the detector from tiny_face_detector_model
// weights.
func NewTinyFaceDetector(w Weights) (*TinyFaceDetector, error) {
	d := &TinyFaceDetector{}
	var err error
	if d.conv0, err = loadConv(w, "conv0/filters", "conv0/bias", 3, 3, 16); err != nil {
		return nil, err
	}
	in := 16
	for i := range d.sep {
		out := in * 2
		if d.sep[i], err = loadSeparable(w, fmt.Sprintf("conv%d", i+1), in, out); err != nil {
			return nil, err
		}
		in = out
	}
	if d.conv8, err = loadConv(w, "conv8/filters", "conv8/bias", 1, in, len(tinyAnchors)*tinyCellOutputs); err != nil {
		return nil, err
	}
	return d, nil
}

func loadConv(w Weights, filters, bias string, k, in, out int) (*conv, error) {
	f, err := w.get(filters, k, k, in, out)
	if err != nil {
		return nil, err
	}
	b, err := w.get(bias, out)
	if err != nil {
		return nil, err
	}
	return newConv(k, k, in, out, f.Data, b.Data), nil
}

func loadSeparable(w Weights, prefix string, in, out int) (separable, error) {
	dw, err := w.get(prefix+"/depthwise_filter", 3, 3, in, 1)
	if err != nil {
		return separable{}, err
	}
	pw, err := loadConv(w, prefix+"/pointwise_filter", prefix+"/bias", 1, in, out)
	if err != nil {
		return separable{}, err
	}
	return separable{dw: &depthwise{kh: 3, kw: 3, c: in, filters: dw.Data}, pw: pw}, nil
}

// apply is face-api's tiny-YOLO depthwiseSeparableConv: zero padding of one,
// depthwise, pointwise plus bias, leaky ReLU.
func (s separable) apply(x fmap) fmap {
	pad := window{x.h, 1}
	t := s.dw.apply(x, 1, pad, window{x.w, 1}, linear)
	return s.pw.apply(t, 1, window{t.h, 0}, window{t.w, 0}, leaky)
}

// Detect finds faces in img. Boxes are in img's pixel coordinates, highest
// score first.
func (d *TinyFaceDetector) Detect(img image.Image, opts TinyOptions) ([]Detection, error) {
	size, thresh := opts.InputSize, opts.ScoreThreshold
	if size == 0 {
		size = tinyDefaultInputSize
	}
	if thresh == 0 {
		thresh = tinyDefaultScoreThreshold
	}
	if size < 32 || size%32 != 0 {
		return nil, fmt.Errorf("faceapi: tiny detector InputSize %d must be a positive multiple of 32 (default 416)", size)
	}
	if !(thresh > 0 && thresh < 1) {
		return nil, fmt.Errorf("faceapi: tiny detector ScoreThreshold %v must be in (0, 1) (default 0.5)", thresh)
	}
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("faceapi: Detect: image bounds %v are empty", b)
	}

	// The image is padded at the bottom or right to a square, so boxes
	// predicted relative to the square need correcting to the image.
	x := squareInput(img, size, false)
	for i, v := range x.d {
		x.d[i] = (v - tinyMeanRGB[i%3]) / 255
	}
	out := d.forward(x)

	scale := float64(size) / float64(max(b.Dx(), b.Dy()))
	corrX := float64(size) / math.Round(float64(b.Dx())*scale)
	corrY := float64(size) / math.Round(float64(b.Dy())*scale)
	cells := float64(out.h)
	var boxes []Box
	var scores []float64
	for row := range out.h {
		for col := range out.w {
			p := out.at(row, col)
			for a, anchor := range tinyAnchors {
				v := p[a*tinyCellOutputs : (a+1)*tinyCellOutputs]
				score := sigmoid(float64(v[4]))
				if score <= thresh {
					continue
				}
				cx := (float64(col) + sigmoid(float64(v[0]))) / cells * corrX
				cy := (float64(row) + sigmoid(float64(v[1]))) / cells * corrY
				w := math.Exp(float64(v[2])) * anchor[0] / cells * corrX
				h := math.Exp(float64(v[3])) * anchor[1] / cells * corrY
				boxes = append(boxes, Box{cx - w/2, cy - h/2, w, h})
				scores = append(scores, score)
			}
		}
	}
	keep := nonMaxSuppression(boxes, scores, tinyIoUThreshold, len(boxes))
	dets := make([]Detection, len(keep))
	for i, k := range keep {
		r := boxes[k]
		dets[i] = Detection{
			Box: Box{
				X:      float64(b.Min.X) + r.X*float64(b.Dx()),
				Y:      float64(b.Min.Y) + r.Y*float64(b.Dy()),
				Width:  r.Width * float64(b.Dx()),
				Height: r.Height * float64(b.Dy()),
			},
			Score: scores[k],
		}
	}
	return dets, nil
}

// forward runs the network on the normalised square input and returns the
// grid of raw anchor outputs (size/32 cells on a side).
func (d *TinyFaceDetector) forward(x fmap) fmap {
	out := d.conv0.apply(x, 1, validWindow(x.h, 3, 1), validWindow(x.w, 3, 1), leaky)
	pool := func(m fmap, s int) fmap {
		return maxPool(m, 2, s, sameWindow(m.h, 2, s), sameWindow(m.w, 2, s))
	}
	out = pool(out, 2)
	for i, s := range d.sep {
		out = s.apply(out)
		stride := 2
		if i == len(d.sep)-1 {
			stride = 1 // the last pool keeps the 13x13 grid (at size 416)
		}
		out = pool(out, stride)
	}
	return d.conv8.apply(out, 1, window{out.h, 0}, window{out.w, 0}, linear)
}
