package evalnet

import (
	"math"
	"math/rand/v2"

	"github.com/face0/face0/nodes/face/crop"
	"github.com/face0/face0/synthfaces"
)

// The image-text model: a CLIP-style pair of towers trained with CLIP's
// symmetric contrastive loss on (image, text) pairs of synthfaces renders
// of identities that are in no dataset (clipSeed).
//
//   - image: the cnn (16/32/64 channels) on a Side×Side image, its 64
//     outputs L2-normalised; it reads whole images and face crops (the
//     paper scores faces with CLIP image embeddings of the face crop);
//   - text: the mean of learned 64-d vectors of the text's hashed unigrams
//     and bigrams, L2-normalised. Nothing like the Face0 model's text
//     encoder (a transformer over CLIP's BPE tokens).
//
// Pairs: each render is shown whole or as its face crop (the ground-truth
// box, jittered), with its caption, its identity description (Describe),
// or both; so the image embedding of a face crop carries the identity, and
// that of a whole image the scene as the captions word it.

var clipChannels = [3]int{16, 32, 64}

// Shipped image-text model training (TestTrainNetworks).
const (
	clipSeed   = 0xc11b
	clipIDs    = 3000
	clipPerID  = 4
	clipEpochs = 8
	clipBatch  = 128
	clipLR     = 2e-3
	// clipScale is the fixed logit scale (1/temperature, CLIP's 0.07).
	clipScale = 1 / 0.07
)

// Dim is the length of the image-text model's embeddings.
const Dim = 64

type clipModel struct {
	img  *cnn
	text []float32 // textBuckets × Dim
}

type clipExample struct {
	x       pix
	box     crop.Box // face box, Side pixels
	caption string
	who     string // Describe(identity)
}

func clipExamples(seed uint64, ids, per int) []clipExample {
	out := make([]clipExample, ids*per)
	parallel(len(out), func(i int) {
		r := newRand(seed, 4, uint64(i))
		size := []int{32, 64, 128}[r.IntN(3)]
		s := synthfaces.RenderSample(seed, i/per, i%per, synthfaces.RenderOptions{Size: size})
		k := float64(Side) / float64(size)
		out[i] = clipExample{
			x:       toPix(s.Pixels),
			box:     crop.Box{X1: float64(s.FaceBox.Min.X) * k, Y1: float64(s.FaceBox.Min.Y) * k, X2: float64(s.FaceBox.Max.X) * k, Y2: float64(s.FaceBox.Max.Y) * k},
			caption: s.Caption,
			who:     Describe(s.Identity),
		}
	})
	return out
}

// view draws what one step shows of example e: the image (whole or face
// crop, mirrored or not, augmented) and the text it is paired with.
func (e clipExample) view(r *rand.Rand) (pix, string) {
	p := append(pix(nil), e.x...)
	b := e.box
	if r.IntN(2) == 0 {
		mirrorPix(p)
		b = b.FlipX(Side)
	}
	var text string
	if r.IntN(2) == 0 {
		// Face crop: jittered like a detector's box.
		s := b.Size() * 0.06
		b = b.Shift(s*r.NormFloat64(), s*r.NormFloat64())
		k := 1 + 0.06*r.NormFloat64()
		cx, cy := b.Centre()
		b = crop.Box{X1: cx + (b.X1-cx)*k, Y1: cy + (b.Y1-cy)*k, X2: cx + (b.X2-cx)*k, Y2: cy + (b.Y2-cy)*k}
		p = cropPix(p, faceRegion(b))
		if r.IntN(5) < 3 {
			text = e.who
		} else {
			text = e.who + "; " + e.caption
		}
	} else {
		switch r.IntN(10) {
		case 0, 1, 2, 3, 4:
			text = e.caption + "; " + e.who
		case 5, 6, 7:
			text = e.caption
		default:
			text = e.who
		}
	}
	augment(p, r)
	return p, text
}

// textVec is a text's unnormalised embedding (mean of its n-gram vectors)
// and the n-grams.
func (m *clipModel) textVec(text string) ([]float32, []int32) {
	g := ngrams(text)
	z := make([]float32, Dim)
	for _, k := range g {
		axpy(z, m.text[int(k)*Dim:][:Dim], 1/float32(len(g)))
	}
	return z, g
}

func normalize(z []float32) ([]float32, float32) {
	var n float64
	for _, v := range z {
		n += float64(v) * float64(v)
	}
	nn := float32(math.Sqrt(n) + 1e-12)
	u := make([]float32, len(z))
	for i, v := range z {
		u[i] = v / nn
	}
	return u, nn
}

// normGrad turns the gradient du at u = z/|z| into the gradient at z.
func normGrad(u, du []float32, nz float32) []float32 {
	d := dot(u, du)
	out := make([]float32, len(u))
	for i := range u {
		out[i] = (du[i] - u[i]*d) / nz
	}
	return out
}

// trainCLIP fits the image-text model on ids×per renders of seed.
func trainCLIP(seed uint64, ids, per, epochs int) *clipModel {
	ex := clipExamples(seed, ids, per)
	r0 := newRand(seed, 5)
	m := &clipModel{img: newCNN(clipChannels, Dim, r0), text: make([]float32, textBuckets*Dim)}
	for i := range m.text {
		m.text[i] = float32(r0.NormFloat64() * 0.1)
	}
	params := append(m.img.params(), m.text)
	opt := newAdam(params, clipLR, 1e-4)
	g := newShardGrads(m.img, [][]float32{m.text})
	n := len(ex)
	B := min(clipBatch, n)
	steps := epochs * (n / B)
	var shardActs [shards][]*acts
	for s := range shards {
		for range (B - s + shards - 1) / shards {
			shardActs[s] = append(shardActs[s], m.img.newActs())
		}
	}
	step := 0
	xs := make([]pix, B)
	texts := make([]string, B)
	for ep := range epochs {
		order := newRand(seed, 6, uint64(ep)).Perm(n)
		for b0 := 0; b0+B <= n; b0 += B {
			for k := range B {
				xs[k], texts[k] = ex[order[b0+k]].view(newRand(seed, 7, uint64(ep), uint64(b0+k)))
			}
			// Image embeddings, in shards.
			zi := make([][]float32, B)
			parallel(shards, func(s int) {
				for j, k := 0, s; k < B; j, k = j+1, k+shards {
					a := shardActs[s][j]
					xs[k].normalize(a.x)
					m.img.forward(a)
					zi[k] = append([]float32(nil), a.out...)
				}
			})
			ui := make([][]float32, B)
			ni := make([]float32, B)
			ut := make([][]float32, B)
			nt := make([]float32, B)
			grams := make([][]int32, B)
			for k := range B {
				ui[k], ni[k] = normalize(zi[k])
				var zt []float32
				zt, grams[k] = m.textVec(texts[k])
				ut[k], nt[k] = normalize(zt)
			}
			dui, dut := contrastiveGrad(ui, ut, texts)
			// Text gradients go to the table (shard 0's extra buffer;
			// one goroutine, in order).
			for k := range B {
				dz := normGrad(ut[k], dut[k], nt[k])
				for _, gk := range grams[k] {
					axpy(g.extra[0][0][int(gk)*Dim:][:Dim], dz, 1/float32(len(grams[k])))
				}
			}
			parallel(shards, func(s int) {
				for j, k := 0, s; k < B; j, k = j+1, k+shards {
					a := shardActs[s][j]
					m.img.backward(a, normGrad(ui[k], dui[k], ni[k]), g.nets[s], &g.sc[s])
				}
			})
			opt.step(params, g.sum(), 1, lrAt(step, steps))
			g.zero()
			step++
		}
	}
	return m
}

// contrastiveGrad returns the gradients, with respect to the normalised
// image and text embeddings, of CLIP's symmetric cross-entropy averaged
// over the batch; pairs with the same text are positives of each other
// (soft targets).
func contrastiveGrad(ui, ut [][]float32, texts []string) (dui, dut [][]float32) {
	B := len(ui)
	logits := make([]float64, B*B)
	for i := range B {
		for j := range B {
			logits[i*B+j] = clipScale * float64(dot(ui[i], ut[j]))
		}
	}
	target := make([]float64, B*B)
	for i := range B {
		var n float64
		for j := range B {
			if texts[i] == texts[j] {
				n++
			}
		}
		for j := range B {
			if texts[i] == texts[j] {
				target[i*B+j] = 1 / n
			}
		}
	}
	dl := make([]float64, B*B)
	softmaxRows := func(at func(i, j int) int) {
		for i := range B {
			mx := math.Inf(-1)
			for j := range B {
				mx = math.Max(mx, logits[at(i, j)])
			}
			var s float64
			for j := range B {
				s += math.Exp(logits[at(i, j)] - mx)
			}
			for j := range B {
				k := at(i, j)
				dl[k] += (math.Exp(logits[k]-mx)/s - target[k]) / (2 * float64(B))
			}
		}
	}
	softmaxRows(func(i, j int) int { return i*B + j }) // image → texts
	softmaxRows(func(i, j int) int { return j*B + i }) // text → images
	dui = make([][]float32, B)
	dut = make([][]float32, B)
	for i := range B {
		dui[i] = make([]float32, Dim)
		dut[i] = make([]float32, Dim)
	}
	for i := range B {
		for j := range B {
			d := float32(clipScale * dl[i*B+j])
			if d == 0 {
				continue
			}
			axpy(dui[i], ut[j], d)
			axpy(dut[j], ui[i], d)
		}
	}
	return dui, dut
}

// contrastiveLoss is the loss contrastiveGrad differentiates (for tests).
func contrastiveLoss(ui, ut [][]float32, texts []string) float64 {
	B := len(ui)
	var loss float64
	for dir := range 2 {
		for i := range B {
			l := make([]float64, B)
			mx := math.Inf(-1)
			for j := range B {
				a, b := i, j
				if dir == 1 {
					a, b = j, i
				}
				l[j] = clipScale * float64(dot(ui[a], ut[b]))
				mx = math.Max(mx, l[j])
			}
			var s float64
			for _, v := range l {
				s += math.Exp(v - mx)
			}
			var n float64
			for j := range B {
				if texts[i] == texts[j] {
					n++
				}
			}
			for j := range B {
				if texts[i] == texts[j] {
					loss -= (l[j] - mx - math.Log(s)) / n / (2 * float64(B))
				}
			}
		}
	}
	return loss
}

func (m *clipModel) image(p pix, a *acts) []float32 {
	p.normalize(a.x)
	m.img.forward(a)
	u, _ := normalize(a.out)
	return u
}

func (m *clipModel) textEmbedding(text string) []float32 {
	z, _ := m.textVec(text)
	u, _ := normalize(z)
	return u
}
