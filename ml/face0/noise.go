package face0

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Domain separates the random streams drawn from one user seed, so that the
// initial latent, the per-step sampler noise and the embedding noise of the
// same seed are independent of each other.
type Domain uint64

// The streams the project draws.
const (
	DomainLatent      Domain = 0x6c6174656e74     // "latent": initial latent noise
	DomainStep        Domain = 0x73746570         // "step": noise inside sampler steps (DDIM η > 0)
	DomainEmbedNoise  Domain = 0x656d626e6f697365 // "embnoise": AddNoise on an embedding
	DomainRandomEmbed Domain = 0x72616e64656d62   // "randemb": RandomEmbedding
	DomainFit         Domain = 0x666974           // "fit": FitMixture's initialisation
)

// splitmix64 is Steele et al.'s SplitMix64 finaliser, used to turn a small
// user seed (0, 1, 2, ...) into well-mixed 64-bit PCG seeds: PCG states that
// differ in a few low bits would otherwise start out correlated.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Gaussian is a deterministic stream of standard-normal values: PCG-DXSM
// (math/rand/v2's PCG, whose algorithm is fixed by its documentation) feeding
// the Box-Muller transform. Both are spelled out here rather than taken from
// rand.NormFloat64 so that the values are part of this package's contract:
// the same seed gives the same bits in every Go release (the standard
// library only promises PCG's output). Box-Muller uses math.Log, Sqrt and
// Sincos; across CPU architectures those may differ in the last bit of a
// float64, which rounding to float32 almost always hides.
type Gaussian struct {
	pcg      rand.PCG
	spare    float64
	hasSpare bool
}

// NewGaussian starts the stream for seed in domain.
func NewGaussian(seed uint64, d Domain) *Gaussian {
	g := &Gaussian{}
	g.Reset(seed, d)
	return g
}

// Reset restarts g as NewGaussian(seed, d), without allocating.
func (g *Gaussian) Reset(seed uint64, d Domain) {
	s1 := splitmix64(seed ^ splitmix64(uint64(d)))
	g.pcg.Seed(s1, splitmix64(s1^uint64(d)))
	g.hasSpare = false
}

// Float64 returns the next standard-normal value. Box-Muller makes two from
// u1 in (0, 1] and u2 in [0, 1): r = sqrt(-2 ln u1), (r cos 2πu2,
// r sin 2πu2); the second is kept for the next call.
func (g *Gaussian) Float64() float64 {
	if g.hasSpare {
		g.hasSpare = false
		return g.spare
	}
	u1 := float64(g.pcg.Uint64()>>11+1) * 0x1p-53
	u2 := float64(g.pcg.Uint64()>>11) * 0x1p-53
	r := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	g.spare, g.hasSpare = r*s, true
	return r * c
}

// Uniform returns a uniform value in [0, 1) from the same stream.
func (g *Gaussian) Uniform() float64 { return float64(g.pcg.Uint64()>>11) * 0x1p-53 }

// Fill fills dst with standard-normal values.
func (g *Gaussian) Fill(dst []float32) {
	for i := range dst {
		dst[i] = float32(g.Float64())
	}
}

// LatentNoise fills dst, one sample's latent ([C, H, W] flattened), with the
// initial noise of seed. Multiply by the sampler's InitNoiseSigma.
func LatentNoise(dst []float32, seed uint64) {
	var g Gaussian
	g.Reset(seed, DomainLatent)
	g.Fill(dst)
}

// BatchLatentNoise fills dst, batch latents of equal size back to back,
// sample b with LatentNoise(seed+b). Each sample's noise depends only on its
// own seed, so sample b of a batch is bit-identical to a batch of one run
// with seed+b, whatever the batch size (the A1111/ComfyUI convention).
func BatchLatentNoise(dst []float32, batch int, seed uint64) error {
	if batch < 1 || len(dst)%batch != 0 {
		return fmt.Errorf("face0: %d values do not split into %d latents", len(dst), batch)
	}
	n := len(dst) / batch
	for b := range batch {
		LatentNoise(dst[b*n:(b+1)*n], seed+uint64(b))
	}
	return nil
}

// StepNoise is the noise source for stochastic sampler steps (a
// sched.NoiseFunc through its Fill method): one Gaussian stream per sample,
// sample b seeded with seed+b in DomainStep, so each sample's trajectory is
// reproducible on its own, as with BatchLatentNoise.
type StepNoise struct {
	streams []Gaussian
}

// NewStepNoise makes the streams for batch samples starting at seed.
func NewStepNoise(batch int, seed uint64) *StepNoise {
	s := &StepNoise{streams: make([]Gaussian, batch)}
	for b := range s.streams {
		s.streams[b].Reset(seed+uint64(b), DomainStep)
	}
	return s
}

// Fill splits dst into one equal part per sample and fills each from its
// own stream. It panics if dst does not split evenly, which would be a
// programming error in the sampler.
func (s *StepNoise) Fill(dst []float32) {
	b := len(s.streams)
	if b == 0 || len(dst)%b != 0 {
		panic(fmt.Sprintf("face0: StepNoise: %d values for %d samples", len(dst), b))
	}
	n := len(dst) / b
	for i := range s.streams {
		s.streams[i].Fill(dst[i*n : (i+1)*n])
	}
}
