package faceapi

import (
	"errors"
	"fmt"
	"image"
	"math"
)

const (
	// RecognizerInputSize is the side of the square RGB image the recogniser
	// sees; other sizes are padded and resized to it.
	RecognizerInputSize = 150
	// DescriptorSize is the length of a face descriptor.
	DescriptorSize = 128
)

// recognizerMeanRGB is the per-channel mean face-api subtracts before scaling
// by 1/255 (FaceRecognitionNet.forwardInput).
var recognizerMeanRGB = [3]float32{122.782, 117.001, 104.298}

// Recognizer computes 128-d face descriptors with face-api's
// FaceRecognitionNet, a ResNet-34-like network (dlib's face recognition
// model, converted to TF.js). Two faces are the same person when the
// Euclidean Distance of their descriptors is below about 0.6.
//
// A Recognizer is immutable and safe for concurrent use.
type Recognizer struct {
	down   *conv      // conv32_down: 7x7 stride 2
	blocks []resBlock // conv32_1 ... conv256_down_out, in order
	fc     *Tensor    // [256, 128]
}

// resBlock is face-api's residual (down=false) or residualDown layer: two
// 3x3 convolutions, the first with stride 2 when down.
type resBlock struct {
	conv1, conv2 *conv
	down         bool
}

// LoadRecognizer reads face_recognition_model from modelDir (face-api's
// model/ folder).
func LoadRecognizer(modelDir string) (*Recognizer, error) {
	w, err := ReadWeights(modelDir, "face_recognition_model")
	if err != nil {
		return nil, err
	}
	return NewRecognizer(w)
}

// NewRecognizer builds a Recognizer from face_recognition_model weights.
func NewRecognizer(w Weights) (*Recognizer, error) {
	r := &Recognizer{}
	var err error
	if r.down, err = scaledConv(w, "conv32_down", 7, 3, 32); err != nil {
		return nil, err
	}
	layers := []struct {
		name    string
		in, out int
		down    bool
	}{
		{"conv32_1", 32, 32, false}, {"conv32_2", 32, 32, false}, {"conv32_3", 32, 32, false},
		{"conv64_down", 32, 64, true}, {"conv64_1", 64, 64, false}, {"conv64_2", 64, 64, false}, {"conv64_3", 64, 64, false},
		{"conv128_down", 64, 128, true}, {"conv128_1", 128, 128, false}, {"conv128_2", 128, 128, false},
		{"conv256_down", 128, 256, true}, {"conv256_1", 256, 256, false}, {"conv256_2", 256, 256, false},
		{"conv256_down_out", 256, 256, true},
	}
	for _, l := range layers {
		b := resBlock{down: l.down}
		if b.conv1, err = scaledConv(w, l.name+"/conv1", 3, l.in, l.out); err != nil {
			return nil, err
		}
		if b.conv2, err = scaledConv(w, l.name+"/conv2", 3, l.out, l.out); err != nil {
			return nil, err
		}
		r.blocks = append(r.blocks, b)
	}
	if r.fc, err = w.get("fc", 256, DescriptorSize); err != nil {
		return nil, err
	}
	return r, nil
}

// scaledConv loads prefix/conv/{filters,bias} and prefix/scale/{weights,biases}
// and folds the per-channel scale layer, y = (conv(x)+bias)*weights+biases,
// into the convolution so inference does one pass instead of three.
func scaledConv(w Weights, prefix string, k, in, out int) (*conv, error) {
	f, err := w.get(prefix+"/conv/filters", k, k, in, out)
	if err != nil {
		return nil, err
	}
	b, err := w.get(prefix+"/conv/bias", out)
	if err != nil {
		return nil, err
	}
	sw, err := w.get(prefix+"/scale/weights", out)
	if err != nil {
		return nil, err
	}
	sb, err := w.get(prefix+"/scale/biases", out)
	if err != nil {
		return nil, err
	}
	filters, bias := make([]float32, len(f.Data)), make([]float32, out)
	for i, v := range f.Data {
		filters[i] = v * sw.Data[i%out]
	}
	for o := range out {
		bias[o] = b.Data[o]*sw.Data[o] + sb.Data[o]
	}
	return newConv(k, k, in, out, filters, bias), nil
}

// Describe returns the descriptor of an aligned face crop. Like face-api, a
// non-square img is padded with black to a centred square, then resized
// bilinearly to RecognizerInputSize.
func (r *Recognizer) Describe(img image.Image) ([]float32, error) {
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("faceapi: Describe: image bounds %v are empty; pass a face crop", b)
	}
	x := squareInput(img, RecognizerInputSize, true)
	return r.forward(x), nil
}

// DescribeTensor returns the descriptor of the exact network input t: RGB
// values in [0, 255], shape [RecognizerInputSize, RecognizerInputSize, 3]
// (face-api's toBatchTensor(150) output, before mean subtraction).
func (r *Recognizer) DescribeTensor(t *Tensor) ([]float32, error) {
	if t == nil || len(t.Shape) != 3 || t.Shape[0] != RecognizerInputSize || t.Shape[1] != RecognizerInputSize || t.Shape[2] != 3 {
		var shape []int
		if t != nil {
			shape = t.Shape
		}
		return nil, fmt.Errorf("faceapi: DescribeTensor: input shape %v, want [%d %d 3]; use Describe for other sizes", shape, RecognizerInputSize, RecognizerInputSize)
	}
	if len(t.Data) != RecognizerInputSize*RecognizerInputSize*3 {
		return nil, errors.New("faceapi: DescribeTensor: len(Data) does not match Shape")
	}
	x := newFmap(RecognizerInputSize, RecognizerInputSize, 3)
	copy(x.d, t.Data)
	return r.forward(x), nil
}

func (r *Recognizer) forward(x fmap) []float32 {
	n := newFmap(x.h, x.w, 3)
	for i, v := range x.d {
		n.d[i] = (v - recognizerMeanRGB[i%3]) / 255
	}
	out := r.down.apply(n, 2, validWindow(n.h, 7, 2), validWindow(n.w, 7, 2), relu)
	out = maxPool(out, 3, 2, validWindow(out.h, 3, 2), validWindow(out.w, 3, 2))
	for _, b := range r.blocks {
		out = b.apply(out)
	}
	// Global average pool, then the fully connected layer.
	avg := make([]float32, out.c)
	for p := range out.h * out.w {
		for c, v := range out.d[p*out.c : (p+1)*out.c] {
			avg[c] += v
		}
	}
	for c := range avg {
		avg[c] /= float32(out.h * out.w)
	}
	desc := make([]float32, DescriptorSize)
	for i, a := range avg {
		axpy(desc, r.fc.Data[i*DescriptorSize:(i+1)*DescriptorSize], a)
	}
	return desc
}

func (b *resBlock) apply(x fmap) fmap {
	if !b.down {
		same := sameWindow(x.h, 3, 1)
		out := b.conv1.apply(x, 1, same, sameWindow(x.w, 3, 1), relu)
		out = b.conv2.apply(out, 1, same, sameWindow(x.w, 3, 1), linear)
		for i, v := range x.d {
			out.d[i] = max(out.d[i]+v, 0)
		}
		return out
	}
	out := b.conv1.apply(x, 2, validWindow(x.h, 3, 2), validWindow(x.w, 3, 2), relu)
	out = b.conv2.apply(out, 1, sameWindow(out.h, 3, 1), sameWindow(out.w, 3, 1), linear)
	// The shortcut is a 2x2 average pool whose extra channels are zero. When
	// the strided convolution comes out one row and column short of the pool
	// (odd-sized inputs), face-api pads it with zeros at the bottom and right.
	pooled := avgPool2(x)
	sum := newFmap(pooled.h, pooled.w, out.c)
	for y := range sum.h {
		for xx := range sum.w {
			s := sum.at(y, xx)
			copy(s, pooled.at(y, xx))
			if y < out.h && xx < out.w {
				for c, v := range out.at(y, xx) {
					s[c] += v
				}
			}
			for c, v := range s {
				s[c] = max(v, 0)
			}
		}
	}
	return sum
}

// Distance is the Euclidean distance between two descriptors, face-api's
// measure of face similarity (same person below about 0.6). It panics if the
// lengths differ, which means the descriptors come from different models.
func Distance(a, b []float32) float64 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("faceapi: Distance of descriptors of lengths %d and %d", len(a), len(b)))
	}
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}
