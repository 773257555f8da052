package face0

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
)

// Mixture is a Gaussian mixture with diagonal covariances over face
// embeddings, the distribution the paper samples random embeddings from
// (Sec. 3.1: "for our experiments we used a simple mixture of Gaussians"):
//
//	p(e) = Σ_k π_k N(e; μ_k, diag(σ_k²))
//
// Its JSON form is what FitMixture produces and the model ships:
//
//	{"dim": 512, "weights": [π_1, ...], "means": [[μ_1], ...],
//	 "variances": [[σ_1²], ...], "normalize": false}
//
// normalize records that the training embeddings were unit length, so
// samples are normalised to unit length too.
type Mixture struct {
	Dim       int         `json:"dim"`
	Weights   []float64   `json:"weights"`
	Means     [][]float64 `json:"means"`
	Variances [][]float64 `json:"variances"`
	Normalize bool        `json:"normalize"`
}

// LoadMixture reads and validates a mixture JSON file.
func LoadMixture(path string) (*Mixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("face0: %w", err)
	}
	m, err := ParseMixture(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return m, nil
}

// ParseMixture decodes and validates a mixture.
func ParseMixture(data []byte) (*Mixture, error) {
	var m Mixture
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("face0: mixture: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks shapes and values: K ≥ 1 components, weights ≥ 0 summing
// to 1 (within 1e-6), Dim values per mean and variance, variances > 0, all
// finite.
func (m *Mixture) Validate() error {
	k := len(m.Weights)
	if k == 0 {
		return errors.New("face0: mixture: no components (weights is empty)")
	}
	if m.Dim < 1 {
		return fmt.Errorf("face0: mixture: dim %d", m.Dim)
	}
	if len(m.Means) != k || len(m.Variances) != k {
		return fmt.Errorf("face0: mixture: %d weights, %d means, %d variances", k, len(m.Means), len(m.Variances))
	}
	sum := 0.0
	for i, w := range m.Weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("face0: mixture: weights[%d] = %g", i, w)
		}
		sum += w
		if len(m.Means[i]) != m.Dim || len(m.Variances[i]) != m.Dim {
			return fmt.Errorf("face0: mixture: component %d has %d means and %d variances, dim is %d", i, len(m.Means[i]), len(m.Variances[i]), m.Dim)
		}
		for j := range m.Dim {
			if mu := m.Means[i][j]; math.IsNaN(mu) || math.IsInf(mu, 0) {
				return fmt.Errorf("face0: mixture: means[%d][%d] = %g", i, j, mu)
			}
			if v := m.Variances[i][j]; !(v > 0) || math.IsInf(v, 0) {
				return fmt.Errorf("face0: mixture: variances[%d][%d] = %g, want > 0", i, j, v)
			}
		}
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("face0: mixture: weights sum to %g, want 1", sum)
	}
	return nil
}

// Sample draws one embedding from g: a component k with probability π_k,
// then μ_k + σ_k ⊙ z with z ~ N(0, I) (normalised if m.Normalize).
func (m *Mixture) Sample(g *Gaussian) []float32 {
	u := g.Uniform()
	k := len(m.Weights) - 1
	acc := 0.0
	for i, w := range m.Weights {
		acc += w
		if u < acc {
			k = i
			break
		}
	}
	out := make([]float32, m.Dim)
	for j := range out {
		out[j] = float32(m.Means[k][j] + math.Sqrt(m.Variances[k][j])*g.Float64())
	}
	if m.Normalize {
		out = Normalize(out)
	}
	return out
}

// RandomEmbedding draws the random embedding for seed (DomainRandomEmbed):
// from m when the model ships a mixture, else from N(0, I) in dim
// dimensions normalised to unit length (a uniformly random direction). dim
// 0 takes m's; a dim that disagrees with m's is an error.
func RandomEmbedding(m *Mixture, dim int, seed uint64) ([]float32, error) {
	g := NewGaussian(seed, DomainRandomEmbed)
	if m == nil {
		if dim < 1 {
			return nil, fmt.Errorf("face0: RandomEmbedding without a mixture needs a dimension, got %d", dim)
		}
		v := make([]float32, dim)
		g.Fill(v)
		return Normalize(v), nil
	}
	if dim != 0 && dim != m.Dim {
		return nil, fmt.Errorf("face0: RandomEmbedding: mixture has dim %d, want %d", m.Dim, dim)
	}
	return m.Sample(g), nil
}

// FitOptions tunes FitMixture. Zero values take the defaults.
type FitOptions struct {
	// MaxIter bounds the EM iterations (default 200).
	MaxIter int
	// Tol stops EM when the mean log-likelihood per point improves by less
	// (default 1e-7).
	Tol float64
	// VarFloor is the smallest variance of a component in dimension j, as a
	// fraction of the data's variance in dimension j (default 1e-3). It
	// stops a component collapsing onto a few points (likelihood → ∞).
	VarFloor float64
}

// FitMixture fits a k-component diagonal Gaussian mixture to embeddings by
// expectation-maximisation (Dempster et al. 1977), starting from k-means++
// centres (Arthur & Vassilvitskii 2007) chosen with seed. The result is
// deterministic for a seed (single-threaded, fixed summation order).
func FitMixture(embeddings [][]float32, k int, seed uint64) (*Mixture, error) {
	return FitMixtureWith(embeddings, k, seed, FitOptions{})
}

// FitMixtureWith is FitMixture with options.
//
// E-step: r_ik ∝ π_k N(x_i; μ_k, σ_k²), computed in log space with the
// log-sum-exp trick. M-step: N_k = Σ_i r_ik, π_k = N_k/n,
// μ_k = Σ_i r_ik x_i / N_k, σ_kj² = max(floor_j, Σ_i r_ik (x_ij-μ_kj)² / N_k).
// A component that loses all its points is restarted on the worst-explained
// point.
func FitMixtureWith(embeddings [][]float32, k int, seed uint64, o FitOptions) (*Mixture, error) {
	n := len(embeddings)
	if k < 1 {
		return nil, fmt.Errorf("face0: FitMixture: k = %d", k)
	}
	if n < k {
		return nil, fmt.Errorf("face0: FitMixture: %d embeddings for %d components", n, k)
	}
	d := len(embeddings[0])
	if d == 0 {
		return nil, errors.New("face0: FitMixture: empty embeddings")
	}
	if o.MaxIter <= 0 {
		o.MaxIter = 200
	}
	if o.Tol <= 0 {
		o.Tol = 1e-7
	}
	if o.VarFloor <= 0 {
		o.VarFloor = 1e-3
	}
	x := make([]float64, n*d)
	unit := true
	for i, e := range embeddings {
		if len(e) != d {
			return nil, fmt.Errorf("face0: FitMixture: embedding %d has %d values, the first has %d", i, len(e), d)
		}
		for j, v := range e {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("face0: FitMixture: embedding %d has %g at %d", i, v, j)
			}
			x[i*d+j] = float64(v)
		}
		if math.Abs(Norm(e)-1) > 1e-3 {
			unit = false
		}
	}

	// The data's per-dimension mean and variance, for the floor and restarts.
	gmean := make([]float64, d)
	gvar := make([]float64, d)
	for i := range n {
		for j := range d {
			gmean[j] += x[i*d+j]
		}
	}
	for j := range d {
		gmean[j] /= float64(n)
	}
	for i := range n {
		for j := range d {
			dv := x[i*d+j] - gmean[j]
			gvar[j] += dv * dv
		}
	}
	floor := make([]float64, d)
	for j := range d {
		gvar[j] /= float64(n)
		floor[j] = max(o.VarFloor*gvar[j], 1e-12)
		gvar[j] = max(gvar[j], floor[j])
	}

	m := &Mixture{Dim: d, Weights: make([]float64, k), Means: make([][]float64, k), Variances: make([][]float64, k), Normalize: unit}
	for c := range k {
		m.Means[c] = make([]float64, d)
		m.Variances[c] = make([]float64, d)
	}

	// k-means++: the first centre uniformly, each next one with probability
	// proportional to the squared distance to the nearest chosen centre.
	rng := rand.New(rand.NewPCG(splitmix64(seed^uint64(DomainFit)), splitmix64(seed)))
	dist := make([]float64, n)
	for i := range dist {
		dist[i] = math.Inf(1)
	}
	centre := rng.IntN(n)
	for c := range k {
		copy(m.Means[c], x[centre*d:(centre+1)*d])
		total := 0.0
		for i := range n {
			dist[i] = min(dist[i], sqDist(x[i*d:(i+1)*d], m.Means[c]))
			total += dist[i]
		}
		if c == k-1 {
			break
		}
		if total == 0 {
			centre = rng.IntN(n) // all points coincide with centres
			continue
		}
		u := rng.Float64() * total
		centre = n - 1
		acc := 0.0
		for i := range n {
			acc += dist[i]
			if u < acc {
				centre = i
				break
			}
		}
	}

	// Initial responsibilities: each point to its nearest centre.
	resp := make([]float64, n*k)
	for i := range n {
		best, bd := 0, math.Inf(1)
		for c := range k {
			if dd := sqDist(x[i*d:(i+1)*d], m.Means[c]); dd < bd {
				best, bd = c, dd
			}
		}
		resp[i*k+best] = 1
	}

	logp := make([]float64, k)
	pointLL := make([]float64, n)
	prevLL := math.Inf(-1)
	for iter := 0; ; iter++ {
		// M-step.
		for c := range k {
			nk := 0.0
			mu := m.Means[c]
			clear(mu)
			for i := range n {
				r := resp[i*k+c]
				nk += r
				if r != 0 {
					xi := x[i*d : (i+1)*d]
					for j := range d {
						mu[j] += r * xi[j]
					}
				}
			}
			if nk < 1e-9 {
				// Restart on the point the mixture explains worst.
				worst := 0
				for i := range n {
					if pointLL[i] < pointLL[worst] {
						worst = i
					}
				}
				copy(mu, x[worst*d:(worst+1)*d])
				copy(m.Variances[c], gvar)
				m.Weights[c] = 1 / float64(n)
				continue
			}
			for j := range d {
				mu[j] /= nk
			}
			v := m.Variances[c]
			clear(v)
			for i := range n {
				r := resp[i*k+c]
				if r != 0 {
					xi := x[i*d : (i+1)*d]
					for j := range d {
						dv := xi[j] - mu[j]
						v[j] += r * dv * dv
					}
				}
			}
			for j := range d {
				v[j] = max(v[j]/nk, floor[j])
			}
			m.Weights[c] = nk / float64(n)
		}
		normalizeWeights(m.Weights)

		// E-step.
		consts := make([]float64, k)
		for c := range k {
			s := math.Log(m.Weights[c])
			for j := range d {
				s -= 0.5 * math.Log(2*math.Pi*m.Variances[c][j])
			}
			consts[c] = s
		}
		ll := 0.0
		for i := range n {
			xi := x[i*d : (i+1)*d]
			top := math.Inf(-1)
			for c := range k {
				s := consts[c]
				mu, v := m.Means[c], m.Variances[c]
				for j := range d {
					dv := xi[j] - mu[j]
					s -= 0.5 * dv * dv / v[j]
				}
				logp[c] = s
				top = max(top, s)
			}
			sum := 0.0
			for c := range k {
				sum += math.Exp(logp[c] - top)
			}
			lse := top + math.Log(sum)
			pointLL[i] = lse
			ll += lse
			for c := range k {
				resp[i*k+c] = math.Exp(logp[c] - lse)
			}
		}
		ll /= float64(n)
		if iter+1 >= o.MaxIter || math.Abs(ll-prevLL) < o.Tol*max(1, math.Abs(ll)) {
			break
		}
		prevLL = ll
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("face0: FitMixture produced an invalid mixture: %w", err)
	}
	return m, nil
}

func sqDist(a, b []float64) float64 {
	s := 0.0
	for j, v := range a {
		dv := v - b[j]
		s += dv * dv
	}
	return s
}

func normalizeWeights(w []float64) {
	s := 0.0
	for _, v := range w {
		s += v
	}
	for i := range w {
		w[i] /= s
	}
}
