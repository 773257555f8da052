package faceapi

import (
	"fmt"
	"image"
	"math"
)

// SSDOptions are the SSD detector's settings. Zero fields take face-api's
// SsdMobilenetv1Options defaults.
type SSDOptions struct {
	// MinConfidence drops detections scoring at or below it, in (0, 1).
	// Default 0.5.
	MinConfidence float64
	// MaxResults caps the number of faces returned. Default 100.
	MaxResults int
}

const (
	ssdInputSize         = 512 // fixed by the model's anchors
	ssdNumAnchors        = 32*32*3 + (16*16+8*8+4*4+2*2+1*1)*6
	ssdDefaultConfidence = 0.5
	ssdDefaultMaxResults = 100
	ssdIoUThreshold      = 0.5
	// ssdBatchNormEpsilon is the float32 epsilon face-api's mobileNetV1 adds
	// to the variance.
	ssdBatchNormEpsilon = 0.0010000000474974513
)

// SSDMobileNetV1 is face-api's default face detector, SsdMobilenetv1: a
// MobileNetV1 backbone (depthwise-separable convolutions with ReLU6) at a
// fixed 512x512 input and an SSD head predicting 5118 anchor boxes from six
// feature maps (32x32 down to 1x1). Slower than TinyFaceDetector, but finds
// smaller faces and fits boxes more tightly.
//
// An SSDMobileNetV1 is immutable and safe for concurrent use.
type SSDMobileNetV1 struct {
	conv0      *conv             // 3x3 stride 2, 3 -> 32
	pairs      [13]mobilenetPair // MobilenetV1 Conv2d_1 ... Conv2d_13
	extra      [8]*conv          // Prediction/Conv2d_0 ... 7
	predictors [6]boxPredictor
	anchors    []float32 // [5118][4]: ymin, xmin, ymax, xmax relative to the input
}

// mobilenetPair is a depthwise 3x3 convolution with batch norm (folded into
// its filters and bias) then a pointwise one, each followed by ReLU6.
type mobilenetPair struct {
	dw     *depthwise
	pw     *conv
	stride int
}

// boxPredictor predicts, per feature map cell and anchor, four box offsets
// and three class logits (face-api reads the second as "face").
type boxPredictor struct {
	box, class *conv
}

// LoadSSDMobileNetV1 reads ssd_mobilenetv1_model from modelDir (face-api's
// model/ folder).
func LoadSSDMobileNetV1(modelDir string) (*SSDMobileNetV1, error) {
	w, err := ReadWeights(modelDir, "ssd_mobilenetv1_model")
	if err != nil {
		return nil, err
	}
	return NewSSDMobileNetV1(w)
}

// NewSSDMobileNetV1 builds the detector from ssd_mobilenetv1_model weights.
func NewSSDMobileNetV1(w Weights) (*SSDMobileNetV1, error) {
	d := &SSDMobileNetV1{}
	var err error
	if d.conv0, err = loadConv(w, "MobilenetV1/Conv2d_0_pointwise/weights", "MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset", 3, 3, 32); err != nil {
		return nil, err
	}
	in := 32
	for i := range d.pairs {
		idx := i + 1
		p := &d.pairs[i]
		out, stride := in, 1
		switch idx {
		case 2, 4, 6, 12:
			out, stride = in*2, 2
		case 1:
			out = in * 2
		}
		p.stride = stride
		if p.dw, err = batchNormDepthwise(w, fmt.Sprintf("MobilenetV1/Conv2d_%d_depthwise", idx), in); err != nil {
			return nil, err
		}
		pre := fmt.Sprintf("MobilenetV1/Conv2d_%d_pointwise", idx)
		if p.pw, err = loadConv(w, pre+"/weights", pre+"/convolution_bn_offset", 1, in, out); err != nil {
			return nil, err
		}
		in = out
	}
	extra := [8]struct{ k, in, out int }{
		{1, 1024, 256}, {3, 256, 512}, {1, 512, 128}, {3, 128, 256},
		{1, 256, 128}, {3, 128, 256}, {1, 256, 64}, {3, 64, 128},
	}
	for i, e := range extra {
		pre := fmt.Sprintf("Prediction/Conv2d_%d_pointwise", i)
		if d.extra[i], err = loadConv(w, pre+"/weights", pre+"/convolution_bn_offset", e.k, e.in, e.out); err != nil {
			return nil, err
		}
	}
	// Channels of the feature maps the six predictors read; the first has
	// three anchors per cell, the others six.
	predIn := [6]int{512, 1024, 512, 256, 256, 128}
	for i, c := range predIn {
		a := 6
		if i == 0 {
			a = 3
		}
		pre := fmt.Sprintf("Prediction/BoxPredictor_%d/", i)
		p := &d.predictors[i]
		if p.box, err = loadConv(w, pre+"BoxEncodingPredictor/weights", pre+"BoxEncodingPredictor/biases", 1, c, 4*a); err != nil {
			return nil, err
		}
		if p.class, err = loadConv(w, pre+"ClassPredictor/weights", pre+"ClassPredictor/biases", 1, c, 3*a); err != nil {
			return nil, err
		}
	}
	anchors, err := w.get("Output/extra_dim", 1, ssdNumAnchors, 4)
	if err != nil {
		return nil, err
	}
	d.anchors = anchors.Data
	return d, nil
}

// batchNormDepthwise loads a depthwise convolution and folds the batch norm
// after it, gamma*(x-mean)/sqrt(variance+eps)+beta, into its filters and bias.
func batchNormDepthwise(w Weights, prefix string, c int) (*depthwise, error) {
	f, err := w.get(prefix+"/depthwise_weights", 3, 3, c, 1)
	if err != nil {
		return nil, err
	}
	var bn [4]*Tensor
	for i, n := range []string{"gamma", "beta", "moving_mean", "moving_variance"} {
		if bn[i], err = w.get(prefix+"/BatchNorm/"+n, c); err != nil {
			return nil, err
		}
	}
	gamma, beta, mean, variance := bn[0].Data, bn[1].Data, bn[2].Data, bn[3].Data
	dw := &depthwise{kh: 3, kw: 3, c: c, filters: make([]float32, len(f.Data)), bias: make([]float32, c)}
	k := make([]float32, c)
	for i := range k {
		k[i] = float32(float64(gamma[i]) / math.Sqrt(float64(variance[i])+ssdBatchNormEpsilon))
		dw.bias[i] = beta[i] - mean[i]*k[i]
	}
	for i, v := range f.Data {
		dw.filters[i] = v * k[i%c]
	}
	return dw, nil
}

// Detect finds faces in img. Boxes are in img's pixel coordinates, highest
// score first.
func (d *SSDMobileNetV1) Detect(img image.Image, opts SSDOptions) ([]Detection, error) {
	conf, maxResults := opts.MinConfidence, opts.MaxResults
	if conf == 0 {
		conf = ssdDefaultConfidence
	}
	if maxResults == 0 {
		maxResults = ssdDefaultMaxResults
	}
	if !(conf > 0 && conf < 1) {
		return nil, fmt.Errorf("faceapi: SSD MinConfidence %v must be in (0, 1) (default 0.5)", conf)
	}
	if maxResults < 0 {
		return nil, fmt.Errorf("faceapi: SSD MaxResults %d must be positive (default 100)", maxResults)
	}
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("faceapi: Detect: image bounds %v are empty", b)
	}

	x := squareInput(img, ssdInputSize, false)
	for i, v := range x.d {
		x.d[i] = v/127.5 - 1
	}
	boxes, scores := d.forward(x)

	keep := ssdSuppress(boxes, scores, conf, min(maxResults, len(scores)))
	// Boxes are relative to the padded square; rescale them to the image.
	s := float64(ssdInputSize) / float64(max(b.Dx(), b.Dy()))
	padX := float64(ssdInputSize) / math.Round(float64(b.Dx())*s)
	padY := float64(ssdInputSize) / math.Round(float64(b.Dy())*s)
	dets := make([]Detection, len(keep))
	for i, k := range keep {
		r := boxes[k]
		top, bottom := max(0, r.Y)*padY, min(1, r.Y+r.Height)*padY
		left, right := max(0, r.X)*padX, min(1, r.X+r.Width)*padX
		dets[i] = Detection{
			Box: Box{
				X:      float64(b.Min.X) + left*float64(b.Dx()),
				Y:      float64(b.Min.Y) + top*float64(b.Dy()),
				Width:  (right - left) * float64(b.Dx()),
				Height: (bottom - top) * float64(b.Dy()),
			},
			Score: scores[k],
		}
	}
	return dets, nil
}

// forward runs the network on the normalised 512x512 input and returns every
// anchor's decoded box (relative to the input) and face score.
func (d *SSDMobileNetV1) forward(x fmap) ([]Box, []float64) {
	same := func(m fmap, k, s int) (window, window) { return sameWindow(m.h, k, s), sameWindow(m.w, k, s) }

	wy, wx := same(x, 3, 2)
	out := d.conv0.apply(x, 2, wy, wx, relu6)
	var conv11 fmap
	for i, p := range d.pairs {
		wy, wx = same(out, 3, p.stride)
		out = p.dw.apply(out, p.stride, wy, wx, relu6)
		wy, wx = same(out, 1, 1)
		out = p.pw.apply(out, 1, wy, wx, relu6)
		if i+1 == 11 {
			conv11 = out
		}
	}
	feats := [6]fmap{conv11, out}
	for i, c := range d.extra {
		s := 1 + i%2 // 1x1 stride 1, then 3x3 stride 2, alternating
		wy, wx = same(out, c.kh, s)
		out = c.apply(out, s, wy, wx, relu6)
		if s == 2 {
			feats[2+i/2] = out
		}
	}

	var boxes []Box
	var scores []float64
	for i, p := range d.predictors {
		f := feats[i]
		wy, wx = same(f, 1, 1)
		enc := p.box.apply(f, 1, wy, wx, linear)
		cls := p.class.apply(f, 1, wy, wx, linear)
		for j := range f.h * f.w * (p.box.out / 4) {
			a := d.anchors[4*len(boxes):]
			boxes = append(boxes, decodeSSDBox(enc.d[4*j:4*j+4], a[:4]))
			scores = append(scores, float64(sigmoid32(cls.d[3*j+1])))
		}
	}
	return boxes, scores
}

// decodeSSDBox applies the SSD box encoding (center offsets scaled by 10,
// log sizes scaled by 5) to an anchor; both are [ymin, xmin, ymax, xmax]
// order, the result a Box in input-relative coordinates. Done in float32
// like TF.js.
func decodeSSDBox(p, a []float32) Box {
	sy, sx := a[2]-a[0], a[3]-a[1]
	cy, cx := a[0]+sy/2, a[1]+sx/2
	hh := float32(math.Exp(float64(p[2]/5))) * sy / 2
	hw := float32(math.Exp(float64(p[3]/5))) * sx / 2
	y := p[0]/10*sy + cy
	x := p[1]/10*sx + cx
	return Box{X: float64(x - hw), Y: float64(y - hh), Width: float64(2 * hw), Height: float64(2 * hh)}
}

func sigmoid32(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// ssdSuppress is face-api's SSD non-maximum suppression: candidates scoring
// above minScore, best first, are kept unless they overlap an already kept box
// by IoU > 0.5, up to maxOut boxes.
func ssdSuppress(boxes []Box, scores []float64, minScore float64, maxOut int) []int {
	var cand []int
	var candBoxes []Box
	var candScores []float64
	for i, s := range scores {
		if s > minScore {
			cand = append(cand, i)
			candBoxes = append(candBoxes, boxes[i])
			candScores = append(candScores, s)
		}
	}
	keep := nonMaxSuppression(candBoxes, candScores, ssdIoUThreshold, maxOut)
	for i, k := range keep {
		keep[i] = cand[k]
	}
	return keep
}
