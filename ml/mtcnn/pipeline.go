package mtcnn

import (
	"math"
	"sort"

	"github.com/face0/face0/ml/nn"
)

// The pipeline follows facenet-pytorch's detect_face operation by operation,
// in float32 where it computes in float32, because the goldens are matched
// to a few hundredths of a pixel and a threshold or NMS decision that flips
// on one ulp changes which boxes survive. Products inside sums are wrapped in
// float32() so that no compiler may fuse them into an FMA (the Go spec allows
// fusion otherwise, and PyTorch rounds each operation).

// cand is a candidate box with its score and the regression offsets that
// will calibrate it.
type cand struct {
	box   [4]float32
	score float32
	reg   [4]float32
	lm    [10]float32 // O-Net landmarks, in image pixels
}

// trace counts candidates per stage, mirroring the goldens' trace, so a
// divergence can be located in tests.
type trace struct {
	scales   []float64
	inHW     [][2]int
	outHW    [][2]int
	pnetPass []int
	nms      [][2]int // input and output count of every NMS call, in order
	rnetIn   int
	rnetPass int
	onetIn   int
	onetPass int
}

func (t *trace) addNMS(in, out int) {
	if t != nil {
		t.nms = append(t.nms, [2]int{in, out})
	}
}

// pyramid lists the scales: the first maps minFace to P-Net's 12 px window,
// each next one is factor smaller, until the short side drops below 12 px.
func pyramid(h, w int, cfg config) []float64 {
	m := 12 / cfg.minFace
	minl := float64(min(h, w)) * m
	var scales []float64
	for s := m; minl >= 12; {
		scales = append(scales, s)
		s *= cfg.factor
		minl *= cfg.factor
	}
	return scales
}

func (d *Detector) run(img *rgbImage, cfg config, tr *trace) []Face {
	h, w := img.h, img.w

	// Stage 1: P-Net over the pyramid, NMS per scale, then across scales.
	var all []cand
	for _, s := range pyramid(h, w, cfg) {
		hs, ws := int(float64(h)*s+1), int(float64(w)*s+1)
		prob, reg, oh, ow := d.p.forward(img.level(hs, ws))
		boxes := generate(prob, reg, oh, ow, float32(s), cfg.thresholds[0])
		kept := nmsUnion(boxes, 0.5)
		tr.addNMS(len(boxes), len(kept))
		if tr != nil {
			tr.scales = append(tr.scales, s)
			tr.inHW = append(tr.inHW, [2]int{hs, ws})
			tr.outHW = append(tr.outHW, [2]int{oh, ow})
			tr.pnetPass = append(tr.pnetPass, len(boxes))
		}
		all = append(all, kept...)
	}
	n0 := len(all)
	all = nmsUnion(all, 0.7)
	tr.addNMS(n0, len(all))
	for i := range all {
		c := &all[i]
		bw, bh := c.box[2]-c.box[0], c.box[3]-c.box[1]
		calibrate(&c.box, c.reg, bw, bh)
		rerec(&c.box)
	}

	// Stage 2: R-Net on 24x24 crops.
	all = cropValid(all, w, h)
	if tr != nil {
		tr.rnetIn = len(all)
	}
	if len(all) == 0 {
		return nil
	}
	prob, reg, _ := forwardBatches(all, img, 24, func(x *nn.Tensor) ([]float32, [][4]float32, [][10]float32) {
		p, r := d.r.forward(x)
		return p, r, nil
	})
	all = keepAbove(all, prob, reg, nil, cfg.thresholds[1])
	if tr != nil {
		tr.rnetPass = len(all)
	}
	n0 = len(all)
	all = nmsUnion(all, 0.7)
	tr.addNMS(n0, len(all))
	for i := range all {
		c := &all[i]
		calibrate(&c.box, c.reg, c.box[2]-c.box[0]+1, c.box[3]-c.box[1]+1)
		rerec(&c.box)
	}

	// Stage 3: O-Net on 48x48 crops, landmarks, final calibration.
	all = cropValid(all, w, h)
	if tr != nil {
		tr.onetIn = len(all)
	}
	if len(all) == 0 {
		return nil
	}
	prob, reg, lm := forwardBatches(all, img, 48, d.o.forward)
	all = keepAbove(all, prob, reg, lm, cfg.thresholds[2])
	if tr != nil {
		tr.onetPass = len(all)
	}
	for i := range all {
		c := &all[i]
		// Landmarks are relative to the box O-Net saw, before calibration.
		bw, bh := c.box[2]-c.box[0]+1, c.box[3]-c.box[1]+1
		for k := range 5 {
			c.lm[k] = float32(bw*c.lm[k]) + c.box[0] - 1
			c.lm[5+k] = float32(bh*c.lm[5+k]) + c.box[1] - 1
		}
		calibrate(&c.box, c.reg, bw, bh)
	}
	n0 = len(all)
	all = nmsMin(all, 0.7)
	tr.addNMS(n0, len(all))

	faces := make([]Face, len(all))
	for i, c := range all {
		faces[i] = Face{Box: c.box, Prob: c.score}
		for k := range 5 {
			faces[i].Landmarks[k] = [2]float32{c.lm[k], c.lm[5+k]}
		}
	}
	return faces
}

// generate turns P-Net map cells with prob >= thresh, in row-major order,
// into boxes in image pixels. Cell (x, y) saw the 12x12 window at (2x, 2y) of
// the level scaled by s.
func generate(prob []float32, reg [4][]float32, oh, ow int, s, thresh float32) []cand {
	var out []cand
	for y := range oh {
		for x := range ow {
			i := y*ow + x
			if !(prob[i] >= thresh) {
				continue
			}
			fx, fy := float32(2*x), float32(2*y)
			out = append(out, cand{
				box: [4]float32{
					floor32((fx + 1) / s), floor32((fy + 1) / s),
					floor32((fx + 12) / s), floor32((fy + 12) / s),
				},
				score: prob[i],
				reg:   [4]float32{reg[0][i], reg[1][i], reg[2][i], reg[3][i]},
			})
		}
	}
	return out
}

func floor32(v float32) float32 { return float32(math.Floor(float64(v))) }

// calibrate applies the regression offsets, scaled by the box size (which
// the stages compute with and without +1).
func calibrate(b *[4]float32, r [4]float32, bw, bh float32) {
	b[0] += float32(r[0] * bw)
	b[1] += float32(r[1] * bh)
	b[2] += float32(r[2] * bw)
	b[3] += float32(r[3] * bh)
}

// rerec squares a box about its centre, on its longer side.
func rerec(b *[4]float32) {
	bw, bh := b[2]-b[0], b[3]-b[1]
	l := max(bw, bh)
	b[0] = b[0] + float32(bw*0.5) - float32(l*0.5)
	b[1] = b[1] + float32(bh*0.5) - float32(l*0.5)
	b[2] = b[0] + l
	b[3] = b[1] + l
}

// sortByScore orders candidates by descending score, keeping the input order
// among equal scores (torchvision sorts stably).
func sortByScore(c []cand) {
	sort.SliceStable(c, func(i, j int) bool { return c[i].score > c[j].score })
}

// nmsUnion is torchvision's nms: IoU with areas and intersections without
// +1, dropping boxes whose IoU with a kept box exceeds thresh (compared in
// float64, as the C++ kernel promotes the float IoU to the double threshold).
// The result is in descending score order.
func nmsUnion(c []cand, thresh float64) []cand {
	c = append([]cand(nil), c...)
	sortByScore(c)
	area := make([]float32, len(c))
	for i, b := range c {
		area[i] = (b.box[2] - b.box[0]) * (b.box[3] - b.box[1])
	}
	dead := make([]bool, len(c))
	var keep []cand
	for i := range c {
		if dead[i] {
			continue
		}
		keep = append(keep, c[i])
		bi := c[i].box
		for j := i + 1; j < len(c); j++ {
			if dead[j] {
				continue
			}
			bj := c[j].box
			iw := max(0, min(bi[2], bj[2])-max(bi[0], bj[0]))
			ih := max(0, min(bi[3], bj[3])-max(bi[1], bj[1]))
			inter := iw * ih
			iou := inter / (area[i] + area[j] - inter)
			if float64(iou) > thresh {
				dead[j] = true
			}
		}
	}
	return keep
}

// nmsMin is facenet-pytorch's numpy NMS with the "Min" overlap: areas and
// intersections with +1, overlap = intersection / smaller area, and boxes
// kept while the overlap is <= thresh compared in float32 (numpy casts the
// Python float to the array's float32).
func nmsMin(c []cand, thresh float32) []cand {
	c = append([]cand(nil), c...)
	sortByScore(c)
	area := make([]float32, len(c))
	for i, b := range c {
		area[i] = (b.box[2] - b.box[0] + 1) * (b.box[3] - b.box[1] + 1)
	}
	dead := make([]bool, len(c))
	var keep []cand
	for i := range c {
		if dead[i] {
			continue
		}
		keep = append(keep, c[i])
		bi := c[i].box
		for j := i + 1; j < len(c); j++ {
			if dead[j] {
				continue
			}
			bj := c[j].box
			iw := max(0, min(bi[2], bj[2])-max(bi[0], bj[0])+1)
			ih := max(0, min(bi[3], bj[3])-max(bi[1], bj[1])+1)
			if o := iw * ih / min(area[i], area[j]); !(o <= thresh) {
				dead[j] = true
			}
		}
	}
	return keep
}

// cropRect is a box truncated toward zero and clamped as the reference's
// pad(): rows y0..y1-1 and columns x0..x1-1 (0-based, end exclusive). Parts
// outside the image are dropped, not zero-padded.
func cropRect(b [4]float32, w, h int) (x0, y0, x1, y1 int) {
	x0 = max(int(b[0]), 1) - 1
	y0 = max(int(b[1]), 1) - 1
	x1 = min(int(b[2]), w)
	y1 = min(int(b[3]), h)
	return x0, y0, x1, y1
}

// cropValid drops boxes whose crop would be empty (entirely outside the
// image). The reference skips their crops but keeps the boxes, which shifts
// every later box onto the wrong network output; dropping them is what it
// evidently means to do.
func cropValid(c []cand, w, h int) []cand {
	out := c[:0]
	for _, b := range c {
		if x0, y0, x1, y1 := cropRect(b.box, w, h); x1 > x0 && y1 > y0 {
			out = append(out, b)
		}
	}
	return out
}

// batchSize bounds how many crops go through a network at once, to keep the
// activations (R-Net's first layer is 54 KB per crop) cache- and
// memory-friendly. Batching does not change any number.
const batchSize = 256

type netFunc func(*nn.Tensor) ([]float32, [][4]float32, [][10]float32)

// forwardBatches crops every box from the image, area-resizes it to
// size x size, normalises and runs net over the crops in batches.
func forwardBatches(c []cand, img *rgbImage, size int, net netFunc) (prob []float32, reg [][4]float32, lm [][10]float32) {
	for b0 := 0; b0 < len(c); b0 += batchSize {
		b1 := min(b0+batchSize, len(c))
		x := nn.New(b1-b0, 3, size, size)
		nn.ParallelFor(b1-b0, func(_, i int) {
			x0, y0, x1, y1 := cropRect(c[b0+i].box, img.w, img.h)
			dst := x.Data[i*3*size*size : (i+1)*3*size*size]
			img.resizeInto(dst, x0, y0, x1, y1, size, size, 0, 3*size)
		})
		p, r, l := net(x)
		prob = append(prob, p...)
		reg = append(reg, r...)
		lm = append(lm, l...)
	}
	return prob, reg, lm
}

// keepAbove keeps candidates whose new probability is > thresh, replacing
// the score and the regression (and landmarks, when given) with this stage's.
func keepAbove(c []cand, prob []float32, reg [][4]float32, lm [][10]float32, thresh float32) []cand {
	var out []cand
	for i, b := range c {
		if !(prob[i] > thresh) {
			continue
		}
		b.score = prob[i]
		b.reg = reg[i]
		if lm != nil {
			b.lm = lm[i]
		}
		out = append(out, b)
	}
	return out
}
