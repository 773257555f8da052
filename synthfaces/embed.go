package synthfaces

import "math"

// EmbeddingSpace names the attribute embedding space.
const EmbeddingSpace = "synthfaces-attr-64"

// EmbeddingDim is the length of an attribute embedding.
const EmbeddingDim = 64

// Embedding is an identity embedding with the name of its space.
type Embedding struct {
	Space  string    `json:"space"`
	Vector []float32 `json:"vector"`
}

// attrFeatures encodes identity attributes: one-hot blocks for the
// categorical attributes and centred continuous values (each about -1..1,
// weighted 0.5). Colours are encoded by their palette index, not their RGB.
func attrFeatures(a Identity) []float64 {
	var f []float64
	oneHot := func(list []string, v string) {
		for _, x := range list {
			if x == v {
				f = append(f, 1)
			} else {
				f = append(f, 0)
			}
		}
	}
	oneHot(names(skinTones), a.SkinTone)
	oneHot(FaceShapes, a.FaceShape)
	oneHot(names(eyeColors), a.EyeColor)
	oneHot(EyeShapes, a.EyeShape)
	oneHot(BrowShapes, a.BrowShape)
	oneHot(names(hairColors), a.HairColor)
	oneHot(HairStyles, a.HairStyle)
	oneHot(NoseShapes, a.NoseShape)
	oneHot(names(lipColors), a.LipColor)
	oneHot(FacialHairs, a.FacialHair)
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	f = append(f, b(a.Freckles), b(a.Mole))
	cont := func(v, lo, hi float64) { f = append(f, 0.5*(2*(v-lo)/(hi-lo)-1)) }
	cont(a.FaceWidth, 0.93, 1.07)
	cont(a.EyeSize, 0.8, 1.25)
	cont(a.EyeSpacing, 0.85, 1.15)
	cont(a.EyeHeight, -0.06, 0.06)
	cont(a.BrowWeight, 0.6, 1.6)
	cont(a.HairVolume, 0.85, 1.2)
	cont(a.NoseSize, 0.8, 1.25)
	cont(a.MouthWidth, 0.8, 1.2)
	cont(a.LipFull, 0.7, 1.3)
	cont(a.EarSize, 0.85, 1.15)
	return f
}

var projection = func() [][]float64 {
	n := len(attrFeatures(NewIdentity(0, 0)))
	r := newRNG(0x5f0a77, 64)
	p := make([][]float64, EmbeddingDim)
	for i := range p {
		p[i] = make([]float64, n)
		for j := range p[i] {
			p[i][j] = r.norm()
		}
	}
	return p
}()

// AttrEmbedding returns the synthfaces-attr-64 embedding of an identity: a
// fixed Gaussian random projection of attrFeatures, L2-normalised. It is a
// stand-in for a face embedder on this synthetic data (identical for every
// image of an identity, defined only for synthfaces identities); the fixed
// projection keeps distances between attribute vectors roughly intact.
func AttrEmbedding(a Identity) Embedding {
	f := attrFeatures(a)
	v := make([]float32, EmbeddingDim)
	var n float64
	for i, row := range projection {
		var s float64
		for j, x := range f {
			s += row[j] * x
		}
		v[i] = float32(s)
		n += s * s
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return Embedding{Space: EmbeddingSpace, Vector: v}
}

// Cosine is the cosine similarity of two embeddings; 0 when either is nil
// or zero (a missing face scores 0, as in the paper): how face alignment
// compares an input face with a generated one.
func Cosine(a, b []float32) float64 {
	if a == nil || b == nil {
		return 0
	}
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

func cosine(a, b []float32) float64 { return Cosine(a, b) }
