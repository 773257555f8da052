package face0

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func vec(r *rand.Rand, d int, scale float64) []float32 {
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func angle(a, b []float32) float64 {
	return math.Acos(max(-1, min(1, dot(a, b)/(Norm(a)*Norm(b)))))
}

func closeVec(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func TestSlerp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	a := vec(r, 64, 1)
	b := vec(r, 64, 1)
	bSame := Normalize(b) // rescaled to a's norm below
	for i := range bSame {
		bSame[i] *= float32(Norm(a))
	}
	anti := make([]float32, len(a))
	for i := range a {
		anti[i] = -a[i] * 2
	}
	near := slices.Clone(a)
	near[0] += 1e-5
	tests := []struct {
		name string
		a, b []float32
	}{
		{"general", a, b},
		{"equal norms", a, bSame},
		{"nearly parallel", a, near},
		{"anti-parallel", a, anti},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			na, nb := Norm(tc.a), Norm(tc.b)
			omega := angle(tc.a, tc.b)
			for _, tt := range []float64{0, 0.25, 0.5, 0.75, 1} {
				got, err := Slerp(tc.a, tc.b, tt)
				if err != nil {
					t.Fatal(err)
				}
				switch tt {
				case 0:
					closeVec(t, "t=0", got, tc.a, 1e-5)
				case 1:
					closeVec(t, "t=1", got, tc.b, 1e-5)
				}
				// Length moves linearly: norm preserved for equal norms.
				if want := (1-tt)*na + tt*nb; math.Abs(Norm(got)-want) > 1e-5*want {
					t.Errorf("t=%g: norm %g, want %g", tt, Norm(got), want)
				}
				// Constant angular speed along the great circle.
				if tc.name != "nearly parallel" {
					if d := angle(tc.a, got); tt > 0 && math.Abs(d-tt*omega) > 1e-4 {
						t.Errorf("t=%g: angle from a %g, want %g", tt, d, tt*omega)
					}
				}
			}
		})
	}
	if _, err := Slerp(a, a[:3], 0.5); err == nil {
		t.Error("size mismatch accepted")
	}
	zero := make([]float32, 64)
	got, _ := Slerp(zero, a, 0.5)
	want, _ := Lerp(zero, a, 0.5)
	closeVec(t, "zero", got, want, 0)
}

func TestLerp(t *testing.T) {
	got, err := Lerp([]float32{0, 2}, []float32{4, 6}, 0.25)
	if err != nil || !slices.Equal(got, []float32{1, 3}) {
		t.Errorf("%v %v", got, err)
	}
}

func TestMean(t *testing.T) {
	a, b := []float32{1, 0}, []float32{0, 1}
	tests := []struct {
		name    string
		embs    [][]float32
		weights []float64
		renorm  bool
		want    []float32
	}{
		{"equal", [][]float32{a, b}, nil, false, []float32{0.5, 0.5}},
		{"weighted", [][]float32{a, b}, []float64{3, 1}, false, []float32{0.75, 0.25}},
		{"renormalised unit", [][]float32{a, b}, nil, true, []float32{float32(math.Sqrt(0.5)), float32(math.Sqrt(0.5))}},
		// Norms 2 and 4 with weights 1, 3: target norm (2 + 12)/4 = 3.5.
		{"renormalised to mean norm", [][]float32{{2, 0}, {0, 4}}, []float64{1, 3}, true,
			[]float32{float32(3.5 * 0.5 / math.Hypot(0.5, 3)), float32(3.5 * 3 / math.Hypot(0.5, 3))}},
		{"single", [][]float32{{1, 2, 3}}, nil, true, []float32{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Mean(tc.embs, tc.weights, tc.renorm)
			if err != nil {
				t.Fatal(err)
			}
			closeVec(t, "mean", got, tc.want, 1e-6)
		})
	}
	for name, f := range map[string]func() error{
		"none":       func() error { _, err := Mean(nil, nil, false); return err },
		"sizes":      func() error { _, err := Mean([][]float32{a, {1}}, nil, false); return err },
		"weights":    func() error { _, err := Mean([][]float32{a, b}, []float64{1}, false); return err },
		"zero sum":   func() error { _, err := Mean([][]float32{a, b}, []float64{1, -1}, false); return err },
		"nan weight": func() error { _, err := Mean([][]float32{a, b}, []float64{math.NaN(), 1}, false); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestAddNoise(t *testing.T) {
	e := make([]float32, 20000)
	x := AddNoise(e, 0.1, 7)
	if !slices.Equal(x, AddNoise(e, 0.1, 7)) {
		t.Error("not deterministic")
	}
	if slices.Equal(x, AddNoise(e, 0.1, 8)) {
		t.Error("seed ignored")
	}
	m, v := meanVar(x)
	if math.Abs(m) > 0.003 || math.Abs(v-0.01) > 0.0005 {
		t.Errorf("mean %g var %g, want 0 and 0.01", m, v)
	}
}

func meanVar(x []float32) (float64, float64) {
	s, s2 := 0.0, 0.0
	for _, v := range x {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	n := float64(len(x))
	return s / n, s2/n - (s/n)*(s/n)
}

func TestRandomEmbedding(t *testing.T) {
	e, err := RandomEmbedding(nil, 512, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(e) != 512 || math.Abs(Norm(e)-1) > 1e-6 {
		t.Errorf("len %d norm %g", len(e), Norm(e))
	}
	e2, _ := RandomEmbedding(nil, 512, 3)
	e3, _ := RandomEmbedding(nil, 512, 4)
	if !slices.Equal(e, e2) || slices.Equal(e, e3) {
		t.Error("seeding")
	}
	if _, err := RandomEmbedding(nil, 0, 1); err == nil {
		t.Error("dim 0 without a mixture accepted")
	}
	m := twoComponents()
	if _, err := RandomEmbedding(m, 3, 1); err == nil {
		t.Error("dim mismatch accepted")
	}
	if e, err := RandomEmbedding(m, 0, 1); err != nil || len(e) != 2 {
		t.Errorf("%v %v", e, err)
	}
}

func twoComponents() *Mixture {
	return &Mixture{
		Dim:       2,
		Weights:   []float64{0.3, 0.7},
		Means:     [][]float64{{-10, 5}, {10, -5}},
		Variances: [][]float64{{1, 4}, {0.25, 9}},
	}
}

// Samples must follow the mixture: component frequencies π_k, and within
// each component mean μ_k and variance σ_k².
func TestMixtureSamplingStatistics(t *testing.T) {
	m := twoComponents()
	g := NewGaussian(11, DomainRandomEmbed)
	const n = 40000
	var count [2]int
	var sum, sum2 [2][2]float64
	for range n {
		e := m.Sample(g)
		k := 0
		if e[0] > 0 {
			k = 1
		}
		count[k]++
		for j := range 2 {
			sum[k][j] += float64(e[j])
			sum2[k][j] += float64(e[j]) * float64(e[j])
		}
	}
	for k := range 2 {
		frac := float64(count[k]) / n
		// Binomial standard error sqrt(0.21/n) ≈ 0.0023; allow 4 of them.
		if math.Abs(frac-m.Weights[k]) > 0.01 {
			t.Errorf("component %d frequency %g, want %g", k, frac, m.Weights[k])
		}
		for j := range 2 {
			c := float64(count[k])
			mean := sum[k][j] / c
			variance := sum2[k][j]/c - mean*mean
			if math.Abs(mean-m.Means[k][j]) > 4*math.Sqrt(m.Variances[k][j]/c) {
				t.Errorf("component %d dim %d mean %g, want %g", k, j, mean, m.Means[k][j])
			}
			if math.Abs(variance/m.Variances[k][j]-1) > 0.05 {
				t.Errorf("component %d dim %d variance %g, want %g", k, j, variance, m.Variances[k][j])
			}
		}
	}
}

// Three well-separated clusters in 8 dimensions: EM from k-means++ must
// find their weights, means and variances.
func TestFitMixtureRecoversClusters(t *testing.T) {
	truth := &Mixture{Dim: 8, Weights: []float64{0.2, 0.3, 0.5}}
	r := rand.New(rand.NewPCG(5, 5))
	for k := range 3 {
		mu := make([]float64, 8)
		v := make([]float64, 8)
		for j := range 8 {
			mu[j] = float64((k*3+j)%5-2) * 6 // distinct, far apart
			v[j] = 0.5 + 0.25*float64((k+j)%3)
		}
		mu[k] += 20
		truth.Means = append(truth.Means, mu)
		truth.Variances = append(truth.Variances, v)
	}
	if err := truth.Validate(); err != nil {
		t.Fatal(err)
	}
	g := NewGaussian(1, DomainRandomEmbed)
	var data [][]float32
	for range 3000 {
		data = append(data, truth.Sample(g))
	}
	r.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })

	fit, err := FitMixture(data, 3, 42)
	if err != nil {
		t.Fatal(err)
	}
	if fit.Normalize {
		t.Error("Normalize set for non-unit data")
	}
	for k := range 3 {
		// Match each true component to the nearest fitted mean.
		best, bd := 0, math.Inf(1)
		for c := range 3 {
			if d := sqDist(truth.Means[k], fit.Means[c]); d < bd {
				best, bd = c, d
			}
		}
		if math.Sqrt(bd) > 0.3 {
			t.Errorf("component %d: nearest fitted mean is %g away", k, math.Sqrt(bd))
		}
		if math.Abs(fit.Weights[best]-truth.Weights[k]) > 0.03 {
			t.Errorf("component %d: weight %g, want %g", k, fit.Weights[best], truth.Weights[k])
		}
		for j := range 8 {
			if math.Abs(fit.Variances[best][j]/truth.Variances[k][j]-1) > 0.2 {
				t.Errorf("component %d dim %d: variance %g, want %g", k, j, fit.Variances[best][j], truth.Variances[k][j])
			}
		}
	}

	// Deterministic for a seed, and the JSON round-trips.
	again, _ := FitMixture(data, 3, 42)
	j1, _ := json.Marshal(fit)
	j2, _ := json.Marshal(again)
	if string(j1) != string(j2) {
		t.Error("FitMixture is not deterministic")
	}
	back, err := ParseMixture(j1)
	if err != nil {
		t.Fatal(err)
	}
	j3, _ := json.Marshal(back)
	if string(j3) != string(j1) {
		t.Error("JSON round trip changed the mixture")
	}
}

func TestFitMixtureEdgeCases(t *testing.T) {
	// Unit-norm data: the mixture remembers to normalise its samples.
	g := NewGaussian(3, DomainRandomEmbed)
	var unit [][]float32
	for range 200 {
		v := make([]float32, 16)
		g.Fill(v)
		unit = append(unit, Normalize(v))
	}
	m, err := FitMixture(unit, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Normalize {
		t.Error("Normalize not set for unit-norm data")
	}
	if e, _ := RandomEmbedding(m, 16, 9); math.Abs(Norm(e)-1) > 1e-6 {
		t.Errorf("sample norm %g", Norm(e))
	}
	// Duplicated points and more components than distinct points: the
	// variance floor keeps the fit finite.
	dup := [][]float32{{1, 1}, {1, 1}, {1, 1}, {2, 2}, {2, 2}}
	if m, err := FitMixture(dup, 3, 1); err != nil {
		t.Errorf("duplicates: %v", err)
	} else if err := m.Validate(); err != nil {
		t.Error(err)
	}
	for name, f := range map[string]func() error{
		"k=0":          func() error { _, err := FitMixture(unit, 0, 1); return err },
		"too few":      func() error { _, err := FitMixture(unit[:2], 3, 1); return err },
		"ragged":       func() error { _, err := FitMixture([][]float32{{1, 2}, {1}}, 1, 1); return err },
		"nan":          func() error { _, err := FitMixture([][]float32{{1, float32(math.NaN())}}, 1, 1); return err },
		"empty vector": func() error { _, err := FitMixture([][]float32{{}}, 1, 1); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseMixtureErrors(t *testing.T) {
	for i, js := range []string{
		`{`,
		`{"dim": 2, "weights": [], "means": [], "variances": []}`,
		`{"dim": 2, "weights": [0.5, 0.4], "means": [[0,0],[1,1]], "variances": [[1,1],[1,1]]}`,
		`{"dim": 2, "weights": [1], "means": [[0,0]], "variances": [[1,0]]}`,
		`{"dim": 2, "weights": [1], "means": [[0]], "variances": [[1,1]]}`,
		`{"dim": 2, "weights": [1], "means": [[0,0]], "variances": [[1,1],[1,1]]}`,
		`{"dim": 0, "weights": [1], "means": [[]], "variances": [[]]}`,
		`{"dim": 1, "weights": [-1, 2], "means": [[0],[0]], "variances": [[1],[1]]}`,
	} {
		if _, err := ParseMixture([]byte(js)); err == nil {
			t.Errorf("case %d accepted: %s", i, js)
		}
	}
	m, err := ParseMixture([]byte(`{"dim": 1, "weights": [1], "means": [[3]], "variances": [[2]]}`))
	if err != nil || m.Means[0][0] != 3 {
		t.Error(fmt.Sprint(m, err))
	}
}
