// Package layerstest holds the test helpers that the tests of training/sd,
// training/textenc and training/vae share: one backend recipe, seeded
// noise, perturbed weights and the relative-difference parity check, so
// every network's parity numbers mean the same thing.
package layerstest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // the "go" backend

	"github.com/face0/face0/training/model"
)

// Backend is GoMLX's pure-Go backend. ops_sequential: see training.Backend
// (parallel op scheduling deadlocks in v0.26.0).
func Backend(t testing.TB) backends.Backend {
	t.Helper()
	b, err := backends.NewWithConfig("go:ops_sequential")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Randn is n values of N(0, std²) from seed.
func Randn(n int, seed uint64, std float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 9))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return out
}

// Perturbed returns a copy of w with every weight of specs moved by
// N(0, std²) (the i-th seeded 100+i), so that biases and norms are not at
// their trivial initial values and a parity test exercises them.
func Perturbed(w model.Weights, specs []model.ParamSpec, std float64) model.Weights {
	out := w.Clone()
	for i, s := range specs {
		d := Randn(len(out[s.Name].Data), uint64(100+i), std)
		for j := range d {
			out[s.Name].Data[j] += d[j]
		}
	}
	return out
}

// Compare fails t unless got is within tol·max|want| of want everywhere.
// The tolerance is relative to the output's scale because the networks'
// outputs range from ~1 to ~100s and float32 error grows with them.
func Compare(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxDiff, scale float64
	for i := range got {
		maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	t.Logf("%s: max |diff| = %.3g, output scale (max |y|) %.3g, relative %.3g", what, maxDiff, scale, maxDiff/scale)
	if scale == 0 || maxDiff > tol*scale {
		t.Errorf("%s: differ by %.3g at output scale %.3g (relative %.3g > %g)", what, maxDiff, scale, maxDiff/scale, tol)
	}
}
