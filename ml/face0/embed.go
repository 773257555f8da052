package face0

import (
	"errors"
	"fmt"
	"math"
)

// Face embeddings are plain []float32 vectors (the face embedder's output,
// before the projection MLP). The paper controls generations by moving in
// this space (Sec. 3.3): interpolating between two faces, averaging several
// photos of one person, adding noise for variety (Sec. 2.2), and sampling
// random embeddings for consistent characters (Sec. 3.1, 3.2). All
// arithmetic accumulates in float64.

// Norm is the Euclidean length of v.
func Norm(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i, x := range a {
		s += float64(x) * float64(b[i])
	}
	return s
}

func sameDim(a, b []float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("face0: embeddings of different sizes, %d and %d", len(a), len(b))
	}
	if len(a) == 0 {
		return errors.New("face0: empty embedding")
	}
	return nil
}

// Lerp is the linear interpolation (1-t)·a + t·b (paper, Fig. 5 and 6).
// t outside [0, 1] extrapolates.
func Lerp(a, b []float32, t float64) ([]float32, error) {
	if err := sameDim(a, b); err != nil {
		return nil, err
	}
	out := make([]float32, len(a))
	for i := range a {
		out[i] = float32((1-t)*float64(a[i]) + t*float64(b[i]))
	}
	return out, nil
}

// parallelEps bounds 1 - |cos Ω| below which Slerp treats a and b as
// parallel (or anti-parallel): sin Ω is then below ~1.4e-3 and the
// sin(tΩ)/sin Ω weights lose precision.
const parallelEps = 1e-6

// Slerp interpolates on the sphere: the direction moves along the great
// circle from a's to b's at constant angular speed (Shoemake 1985),
//
//	u(t) = sin((1-t)Ω)/sin Ω · â + sin(tΩ)/sin Ω · b̂,   cos Ω = â·b̂,
//
// and the length moves linearly from |a| to |b|; for |a| = |b| this is the
// classic slerp of a and b and preserves the norm, which keeps an
// interpolated embedding as "typical" as its endpoints (linear
// interpolation shrinks it towards the origin mid-way).
//
// Degenerate cases: nearly parallel directions fall back to normalised
// linear interpolation of the directions (the limit of the formula); nearly
// opposite ones have no unique great circle, so the path goes through the
// axis least aligned with a, made orthogonal to it, which is deterministic.
// A zero vector has no direction: then Slerp is Lerp.
func Slerp(a, b []float32, t float64) ([]float32, error) {
	if err := sameDim(a, b); err != nil {
		return nil, err
	}
	na, nb := Norm(a), Norm(b)
	if na == 0 || nb == 0 {
		return Lerp(a, b, t)
	}
	length := (1-t)*na + t*nb
	cos := max(-1, min(1, dot(a, b)/(na*nb)))
	out := make([]float32, len(a))
	switch {
	case cos > 1-parallelEps:
		u := make([]float64, len(a))
		n := 0.0
		for i := range a {
			u[i] = (1-t)*float64(a[i])/na + t*float64(b[i])/nb
			n += u[i] * u[i]
		}
		n = math.Sqrt(n)
		for i := range out {
			out[i] = float32(length * u[i] / n)
		}
	case cos < -1+parallelEps:
		// â and b̂ ≈ -â: rotate by πt in the plane of â and an orthogonal p.
		k := 0
		for i := range a {
			if math.Abs(float64(a[i])) < math.Abs(float64(a[k])) {
				k = i
			}
		}
		p := make([]float64, len(a))
		ak := float64(a[k]) / na
		pn := 0.0
		for i := range a {
			p[i] = -ak * float64(a[i]) / na
			if i == k {
				p[i]++
			}
			pn += p[i] * p[i]
		}
		pn = math.Sqrt(pn)
		if len(a) == 1 || pn == 0 {
			return Lerp(a, b, t) // one dimension: no orthogonal direction
		}
		c, s := math.Cos(math.Pi*t), math.Sin(math.Pi*t)
		for i := range out {
			out[i] = float32(length * (c*float64(a[i])/na + s*p[i]/pn))
		}
	default:
		omega := math.Acos(cos)
		so := math.Sin(omega)
		wa, wb := math.Sin((1-t)*omega)/so, math.Sin(t*omega)/so
		for i := range out {
			out[i] = float32(length * (wa*float64(a[i])/na + wb*float64(b[i])/nb))
		}
	}
	return out, nil
}

// Mean is the weighted mean Σ w_i e_i / Σ w_i of several embeddings, e.g.
// several photos of one person (paper, Sec. 3.3). weights nil means equal
// weights. Averaging shrinks the vector (the directions partly cancel), so
// with renormalize the mean is rescaled to the weighted mean of the input
// norms, Σ w_i |e_i| / Σ w_i (1 for unit-norm embeddings).
func Mean(embs [][]float32, weights []float64, renormalize bool) ([]float32, error) {
	if len(embs) == 0 {
		return nil, errors.New("face0: Mean of no embeddings")
	}
	if weights != nil && len(weights) != len(embs) {
		return nil, fmt.Errorf("face0: %d weights for %d embeddings", len(weights), len(embs))
	}
	d := len(embs[0])
	acc := make([]float64, d)
	wsum, nsum := 0.0, 0.0
	for i, e := range embs {
		if err := sameDim(embs[0], e); err != nil {
			return nil, err
		}
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("face0: weight %d is %g", i, w)
		}
		for j, x := range e {
			acc[j] += w * float64(x)
		}
		wsum += w
		nsum += w * Norm(e)
	}
	if wsum == 0 {
		return nil, errors.New("face0: Mean weights sum to zero")
	}
	scale := 1 / wsum
	if renormalize {
		n := 0.0
		for _, x := range acc {
			n += x * x
		}
		if n = math.Sqrt(n); n > 0 {
			scale = (nsum / wsum) / n
		}
	}
	out := make([]float32, d)
	for j, x := range acc {
		out[j] = float32(x * scale)
	}
	return out, nil
}

// AddNoise returns e + std·z with z ~ N(0, I) from seed (DomainEmbedNoise).
// The paper notes (Sec. 2.2) that a little noise on the embedding increases
// variety across generations, which otherwise stay very consistent. std is
// absolute, per component: for noise of relative size r, use
// std = r·Norm(e)/sqrt(len(e)).
func AddNoise(e []float32, std float64, seed uint64) []float32 {
	g := NewGaussian(seed, DomainEmbedNoise)
	out := make([]float32, len(e))
	for i, x := range e {
		out[i] = float32(float64(x) + std*g.Float64())
	}
	return out
}

// Normalize returns e scaled to unit length (e itself if it is zero).
func Normalize(e []float32) []float32 {
	out := append([]float32(nil), e...)
	if n := Norm(e); n > 0 {
		for i := range out {
			out[i] = float32(float64(out[i]) / n)
		}
	}
	return out
}
