package synthfaces

import "math"

// rng is a small deterministic generator (SplitMix64). It is written out here,
// instead of using math/rand, so that the byte stream behind every identity and
// image is fixed by this package alone and never changes with the Go release.
type rng struct{ s uint64 }

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRNG seeds a stream from the dataset seed and a path of integers
// (a stream tag, an identity id, an image index, ...).
func newRNG(seed uint64, path ...uint64) *rng {
	h := mix64(seed + 0x9e3779b97f4a7c15)
	for _, p := range path {
		h = mix64(h ^ mix64(p+0x632be59bd9b4e019))
	}
	return &rng{h}
}

func (r *rng) uint64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float returns a uniform value in [0, 1).
func (r *rng) float() float64 { return float64(r.uint64()>>11) / (1 << 53) }

// rangef returns a uniform value in [lo, hi).
func (r *rng) rangef(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// intn returns a uniform integer in [0, n).
func (r *rng) intn(n int) int { return int(r.uint64() % uint64(n)) }

// bool returns true with probability p.
func (r *rng) bool(p float64) bool { return r.float() < p }

// weighted picks index i with probability w[i]/sum(w).
func (r *rng) weighted(w ...float64) int {
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	x := r.float() * sum
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

// norm returns a standard normal value (Box-Muller).
func (r *rng) norm() float64 {
	u := r.float()
	if u < 1e-300 {
		u = 1e-300
	}
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float())
}

// hash2 is a stateless hash of integer coordinates to [0, 1), for textures.
func hash2(seed uint64, x, y int) float64 {
	return float64(mix64(seed^mix64(uint64(uint32(x))|uint64(uint32(y))<<32))>>11) / (1 << 53)
}
