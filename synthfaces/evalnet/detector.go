package evalnet

import (
	"math"
	"math/rand/v2"

	"github.com/face0/face0/nodes/face/crop"
	"github.com/face0/face0/synthfaces"
)

// Why a detector of our own: face-api's SSD and tiny detectors, trained on
// photos, find 0–5 of 32 real synthfaces renders at 32 px (upscaled or
// not) and none of 32 samples of the tiny model (measured while building
// this package), so "the largest detected face, 0 when none" would score
// everything 0. This one is trained on renders of identities that are in
// no dataset (detectorSeed) against images without a face: backgrounds,
// renders with the head painted over, and renders shuffled in 4×4 blocks
// or replaced by blocks of their own colours (the tiny model's failure
// modes), all with the augmentation model samples need.

// detectorChannels are the detector's convolution widths; its linear
// layer gives a face logit and the box (centre x, centre y, width,
// height, as fractions of the side, through a sigmoid).
var detectorChannels = [3]int{8, 16, 32}

// Shipped detector training (TestTrainNetworks).
const (
	detectorSeed     = 0xde7ec7
	detectorExamples = 24000
	detectorEpochs   = 5
	detectorBatch    = 64
	detectorLR       = 2e-3
	// boxWeight weighs the box's squared error against the face
	// cross-entropy.
	boxWeight = 8
)

// Threshold is the face probability above which a face is found.
const Threshold = 0.5

// Face is a detection in the pixels of the image given to Detect.
type Face struct {
	Box   crop.Box
	Score float64 // probability of a face, in (0, 1)
}

type detExample struct {
	x    pix
	face bool
	box  [4]float32 // centre x, centre y, width, height; fractions of Side
}

// detExamples draws n examples of seed, half with a face.
func detExamples(seed uint64, n int) []detExample {
	out := make([]detExample, n)
	parallel(n, func(i int) { out[i] = detExampleAt(seed, i) })
	return out
}

func detExampleAt(seed uint64, i int) detExample {
	r := newRand(seed, 1, uint64(i))
	size := []int{32, 64, 128}[r.IntN(3)]
	s := synthfaces.RenderSample(seed, i/2, r.IntN(8), synthfaces.RenderOptions{Size: size})
	p := toPix(s.Pixels)
	k := float64(Side) / float64(size)
	b := crop.Box{X1: float64(s.FaceBox.Min.X) * k, Y1: float64(s.FaceBox.Min.Y) * k, X2: float64(s.FaceBox.Max.X) * k, Y2: float64(s.FaceBox.Max.Y) * k}
	e := detExample{x: p}
	if i%2 == 0 {
		e.face = true
		if r.IntN(2) == 0 {
			mirrorPix(p)
			b = b.FlipX(Side)
		}
		dx, dy := r.IntN(7)-3, r.IntN(7)-3
		p = shift(p, dx, dy)
		b = b.Shift(float64(dx), float64(dy))
		e.x = p
		cx, cy := b.Centre()
		e.box = [4]float32{float32(cx / Side), float32(cy / Side), float32(b.W() / Side), float32(b.H() / Side)}
	} else {
		switch r.IntN(4) {
		case 0: // the figure without its head
			paintHead(p, b, r)
		case 1: // background only
			fillBackground(p, r)
		case 2:
			shuffleBlocks(p, r)
		case 3:
			colourBlocks(p, r)
		}
	}
	augment(e.x, r)
	return e
}

// shift moves the image by (dx, dy), repeating the edge pixels.
func shift(p pix, dx, dy int) pix {
	out := make(pix, len(p))
	for y := range Side {
		sy := min(max(y-dy, 0), Side-1)
		for x := range Side {
			sx := min(max(x-dx, 0), Side-1)
			copy(out[(y*Side+x)*3:][:3], p[(sy*Side+sx)*3:][:3])
		}
	}
	return out
}

// corner is the mean colour of the top-left 4×4 corner (the background).
func corner(p pix) [3]float32 {
	var c [3]float32
	for y := range 4 {
		for x := range 4 {
			for k := range 3 {
				c[k] += p[(y*Side+x)*3+k] / 16
			}
		}
	}
	return c
}

// paintHead covers the head (the face box grown by the hair and hat
// room) with the background colour and some noise.
func paintHead(p pix, b crop.Box, r *rand.Rand) {
	bg := corner(p)
	h := crop.Box{X1: b.X1 - 0.3*b.W(), Y1: b.Y1 - 0.6*b.H(), X2: b.X2 + 0.3*b.W(), Y2: b.Y2 + 0.1*b.H()}
	for y := max(0, int(h.Y1)); y < min(Side, int(math.Ceil(h.Y2))); y++ {
		for x := max(0, int(h.X1)); x < min(Side, int(math.Ceil(h.X2))); x++ {
			for k := range 3 {
				p[(y*Side+x)*3+k] = bg[k] + 0.04*float32(r.NormFloat64())
			}
		}
	}
}

func fillBackground(p pix, r *rand.Rand) {
	bg := corner(p)
	g := float32(r.Float64()*0.3 - 0.15)
	for y := range Side {
		for x := range Side {
			for k := range 3 {
				p[(y*Side+x)*3+k] = bg[k]*(1+g*float32(y)/Side) + 0.03*float32(r.NormFloat64())
			}
		}
	}
}

func shuffleBlocks(p pix, r *rand.Rand) {
	src := append(pix(nil), p...)
	const n = Side / 4
	perm := r.Perm(n * n)
	for i, j := range perm {
		by, bx, sy, sx := i/n*4, i%n*4, j/n*4, j%n*4
		for y := range 4 {
			for x := range 4 {
				copy(p[((by+y)*Side+bx+x)*3:][:3], src[((sy+y)*Side+sx+x)*3:][:3])
			}
		}
	}
}

func colourBlocks(p pix, r *rand.Rand) {
	src := append(pix(nil), p...)
	for by := 0; by < Side; by += 4 {
		for bx := 0; bx < Side; bx += 4 {
			c := src[r.IntN(Side*Side)*3:][:3]
			for y := by; y < by+4; y++ {
				for x := bx; x < bx+4; x++ {
					copy(p[(y*Side+x)*3:][:3], c)
				}
			}
		}
	}
}

// detector wraps the network.
type detector struct{ net *cnn }

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// predict returns the face probability and the box in Side pixels.
func (d *detector) predict(p pix, a *acts) (float64, crop.Box) {
	p.normalize(a.x)
	d.net.forward(a)
	o := a.out
	cx, cy := sigmoid(o[1])*Side, sigmoid(o[2])*Side
	w, h := sigmoid(o[3])*Side, sigmoid(o[4])*Side
	return float64(sigmoid(o[0])), crop.Box{X1: float64(cx - w/2), Y1: float64(cy - h/2), X2: float64(cx + w/2), Y2: float64(cy + h/2)}
}

// trainDetector fits a detector on n examples of seed.
func trainDetector(seed uint64, n, epochs int) *detector {
	ex := detExamples(seed, n)
	net := newCNN(detectorChannels, 5, newRand(seed, 2))
	opt := newAdam(net.params(), detectorLR, 1e-4)
	g := newShardGrads(net, nil)
	steps := epochs * (n / detectorBatch)
	var shardActs [shards]*acts
	for s := range shards {
		shardActs[s] = net.newActs()
	}
	step := 0
	for ep := range epochs {
		order := newRand(seed, 3, uint64(ep)).Perm(n)
		for b0 := 0; b0+detectorBatch <= n; b0 += detectorBatch {
			batch := order[b0 : b0+detectorBatch]
			parallel(shards, func(s int) {
				a := shardActs[s]
				dout := make([]float32, 5)
				for k := s; k < len(batch); k += shards {
					e := ex[batch[k]]
					e.x.normalize(a.x)
					net.forward(a)
					detGrad(a.out, e, dout)
					net.backward(a, dout, g.nets[s], &g.sc[s])
				}
			})
			opt.step(net.params(), g.sum(), 1/float64(detectorBatch), lrAt(step, steps))
			g.zero()
			step++
		}
	}
	return &detector{net: net}
}

// detGrad is the gradient of the detector's loss with respect to its raw
// outputs: binary cross-entropy on the face logit, and for a face the
// squared error of the sigmoid box values.
func detGrad(o []float32, e detExample, d []float32) {
	t := float32(0)
	if e.face {
		t = 1
	}
	d[0] = sigmoid(o[0]) - t
	for k := range 4 {
		d[k+1] = 0
		if e.face {
			s := sigmoid(o[k+1])
			d[k+1] = boxWeight * 2 * (s - e.box[k]) * s * (1 - s)
		}
	}
}
