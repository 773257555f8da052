package mtcnn

import (
	"fmt"
	"math"
	"slices"

	"github.com/face0/face0/ml/nn"
	"github.com/face0/face0/ml/safetensors"
)

// pnet is the 12x12 fully convolutional proposal network. The two 1x1 heads
// (conv4_1: 2 class logits, conv4_2: 4 box offsets) are merged into one
// 6-channel conv; each output channel is still its own dot product, so the
// numbers do not change.
type pnet struct {
	conv1, conv2, conv3, head *nn.Conv2D
}

// rnet refines 24x24 crops; onet refines 48x48 crops and adds landmarks.
// Their dense heads are merged the same way (2+4 and 2+4+10 outputs).
type rnet struct {
	conv1, conv2, conv3 *nn.Conv2D
	dense, head         *nn.Dense
}

type onet struct {
	conv1, conv2, conv3, conv4 *nn.Conv2D
	dense, head                *nn.Dense
}

// weights reads tensors from the file, checking each name and shape, so a
// wrong or truncated file fails at Load with the tensor to blame.
type weights struct {
	f   *safetensors.File
	err error
}

func (w *weights) get(name string, shape ...int) []float32 {
	if w.err != nil {
		return nil
	}
	v, got, err := w.f.Float32(name)
	if err != nil {
		w.err = err
		return nil
	}
	if !slices.Equal(got, shape) {
		w.err = fmt.Errorf("tensor %q has shape %v, want %v; is this the facenet-pytorch MTCNN weights file?", name, got, shape)
		return nil
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			w.err = fmt.Errorf("tensor %q contains NaN or Inf; the weights file is corrupt", name)
			return nil
		}
	}
	return v
}

func (w *weights) conv(prefix string, out, in, k int, prelu string) *nn.Conv2D {
	wt := w.get(prefix+".weight", out, in, k, k)
	b := w.get(prefix+".bias", out)
	var opts []nn.Option
	if prelu != "" {
		opts = append(opts, nn.WithPReLU(w.get(prelu+".weight", out)))
	}
	if w.err != nil {
		return nil
	}
	c, err := nn.NewConv2D(wt, []int{out, in, k, k}, b, opts...)
	if err != nil {
		w.err = fmt.Errorf("%s: %v", prefix, err)
	}
	return c
}

// heads stacks several [n_i, in] dense layers (or, with conv1x1, 1x1 convs
// stored as [n_i, in, 1, 1]) into one.
func (w *weights) heads(in int, names []string, outs []int, conv1x1 bool) (wt, b []float32) {
	for i, name := range names {
		shape := []int{outs[i], in}
		if conv1x1 {
			shape = append(shape, 1, 1)
		}
		wt = append(wt, w.get(name+".weight", shape...)...)
		b = append(b, w.get(name+".bias", outs[i])...)
	}
	return wt, b
}

// permuteDense reorders the columns of a dense weight [out, c*h*w] that was
// trained on activations flattened after permute(0,3,2,1), i.e. with input
// index (x*h + y)*c + ch, so that it applies to the plain NCHW flatten
// ch*h*w + y*w + x. Doing this once at load time saves a transpose per crop.
func permuteDense(wt []float32, out, c, h, w int) []float32 {
	in := c * h * w
	p := make([]float32, len(wt))
	for o := range out {
		for ch := range c {
			for y := range h {
				for x := range w {
					p[o*in+(ch*h+y)*w+x] = wt[o*in+(x*h+y)*c+ch]
				}
			}
		}
	}
	return p
}

func (w *weights) dense(name string, out, in int, prelu string, permute [3]int) *nn.Dense {
	wt := w.get(name+".weight", out, in)
	b := w.get(name+".bias", out)
	slopes := w.get(prelu+".weight", out)
	if w.err != nil {
		return nil
	}
	wt = permuteDense(wt, out, permute[0], permute[1], permute[2])
	d, err := nn.NewDense(wt, out, in, b, nn.WithPReLU(slopes))
	if err != nil {
		w.err = fmt.Errorf("%s: %v", name, err)
	}
	return d
}

func (w *weights) denseHead(in int, names []string, outs []int) *nn.Dense {
	wt, b := w.heads(in, names, outs, false)
	if w.err != nil {
		return nil
	}
	total := 0
	for _, o := range outs {
		total += o
	}
	d, err := nn.NewDense(wt, total, in, b)
	if err != nil {
		w.err = fmt.Errorf("%v: %v", names, err)
	}
	return d
}

func loadPNet(w *weights) *pnet {
	p := &pnet{
		conv1: w.conv("pnet.conv1", 10, 3, 3, "pnet.prelu1"),
		conv2: w.conv("pnet.conv2", 16, 10, 3, "pnet.prelu2"),
		conv3: w.conv("pnet.conv3", 32, 16, 3, "pnet.prelu3"),
	}
	wt, b := w.heads(32, []string{"pnet.conv4_1", "pnet.conv4_2"}, []int{2, 4}, true)
	if w.err != nil {
		return nil
	}
	var err error
	if p.head, err = nn.NewConv2D(wt, []int{6, 32, 1, 1}, b); err != nil {
		w.err = err
	}
	return p
}

func loadRNet(w *weights) *rnet {
	return &rnet{
		conv1: w.conv("rnet.conv1", 28, 3, 3, "rnet.prelu1"),
		conv2: w.conv("rnet.conv2", 48, 28, 3, "rnet.prelu2"),
		conv3: w.conv("rnet.conv3", 64, 48, 2, "rnet.prelu3"),
		dense: w.dense("rnet.dense4", 128, 576, "rnet.prelu4", [3]int{64, 3, 3}),
		head:  w.denseHead(128, []string{"rnet.dense5_1", "rnet.dense5_2"}, []int{2, 4}),
	}
}

func loadONet(w *weights) *onet {
	return &onet{
		conv1: w.conv("onet.conv1", 32, 3, 3, "onet.prelu1"),
		conv2: w.conv("onet.conv2", 64, 32, 3, "onet.prelu2"),
		conv3: w.conv("onet.conv3", 64, 64, 3, "onet.prelu3"),
		conv4: w.conv("onet.conv4", 128, 64, 2, "onet.prelu4"),
		dense: w.dense("onet.dense5", 256, 1152, "onet.prelu5", [3]int{128, 3, 3}),
		head:  w.denseHead(256, []string{"onet.dense6_1", "onet.dense6_2", "onet.dense6_3"}, []int{2, 4, 10}),
	}
}

// softmax2 is the face probability of a 2-class softmax, computed in float64
// and rounded once so it is within half an ulp of exact.
func softmax2(a0, a1 float32) float32 {
	return float32(1 / (1 + math.Exp(float64(a0)-float64(a1))))
}

// forward runs P-Net on a normalised [1, 3, h, w] image and returns the face
// probability map and the 4 regression maps, each oh*ow row-major.
func (p *pnet) forward(x *nn.Tensor) (prob []float32, reg [4][]float32, oh, ow int) {
	y := p.conv1.Forward(x)
	y = nn.MaxPool2D(y, 2, 2, true)
	y = p.conv2.Forward(y)
	y = p.conv3.Forward(y)
	y = p.head.Forward(y)
	oh, ow = y.Shape[2], y.Shape[3]
	n := oh * ow
	prob = make([]float32, n)
	logit0, logit1 := y.Data[:n], y.Data[n:2*n]
	for i := range prob {
		prob[i] = softmax2(logit0[i], logit1[i])
	}
	for c := range reg {
		reg[c] = y.Data[(2+c)*n : (3+c)*n]
	}
	return prob, reg, oh, ow
}

// forward runs R-Net on [N, 3, 24, 24] and returns per crop the face
// probability and the 4 box offsets.
func (r *rnet) forward(x *nn.Tensor) (prob []float32, reg [][4]float32) {
	y := r.conv1.Forward(x)
	y = nn.MaxPool2D(y, 3, 2, true)
	y = r.conv2.Forward(y)
	y = nn.MaxPool2D(y, 3, 2, true)
	y = r.conv3.Forward(y)
	y = r.dense.Forward(y)
	y = r.head.Forward(y)
	n := x.Shape[0]
	prob = make([]float32, n)
	reg = make([][4]float32, n)
	for i := range n {
		o := y.Data[i*6 : i*6+6]
		prob[i] = softmax2(o[0], o[1])
		reg[i] = [4]float32{o[2], o[3], o[4], o[5]}
	}
	return prob, reg
}

// forward runs O-Net on [N, 3, 48, 48] and returns per crop the face
// probability, the 4 box offsets and the 10 landmark values (5 x then 5 y,
// relative to the crop box).
func (o *onet) forward(x *nn.Tensor) (prob []float32, reg [][4]float32, lm [][10]float32) {
	y := o.conv1.Forward(x)
	y = nn.MaxPool2D(y, 3, 2, true)
	y = o.conv2.Forward(y)
	y = nn.MaxPool2D(y, 3, 2, true)
	y = o.conv3.Forward(y)
	y = nn.MaxPool2D(y, 2, 2, true)
	y = o.conv4.Forward(y)
	y = o.dense.Forward(y)
	y = o.head.Forward(y)
	n := x.Shape[0]
	prob = make([]float32, n)
	reg = make([][4]float32, n)
	lm = make([][10]float32, n)
	for i := range n {
		v := y.Data[i*16 : i*16+16]
		prob[i] = softmax2(v[0], v[1])
		copy(reg[i][:], v[2:6])
		copy(lm[i][:], v[6:16])
	}
	return prob, reg, lm
}
