package synthfaces

import "math"

// Training helpers shared by the scene probe and the identity embedder,
// both small MLPs trained per example on renders.

// fitInputStats sets mean and std (each len(features[0])) to the
// per-feature mean and standard deviation (+0.05, so constant features do
// not blow up) over the examples' features f(k), k < n.
func fitInputStats(n int, f func(k int) []float32, mean, std []float32) {
	for i := range mean {
		var s, ss float64
		for k := range n {
			v := float64(f(k)[i])
			s += v
			ss += v * v
		}
		mu := s / float64(n)
		mean[i] = float32(mu)
		std[i] = float32(math.Sqrt(math.Max(ss/float64(n)-mu*mu, 0)) + 0.05)
	}
}

// sgdRow is one momentum-SGD step with weight decay on a weight row w with
// velocity v, for the gradient g·x: v ← mom·v − lr·(g·x + wd·w); w += v.
func sgdRow(w, v, x []float32, g, lr, mom, wd float32) {
	for i, xi := range x {
		v[i] = mom*v[i] - lr*(g*xi+wd*w[i])
		w[i] += v[i]
	}
}
