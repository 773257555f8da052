package evalnet

import (
	"math"
	"testing"
)

// TestCNNGradient compares the hand-written backward pass with central
// differences of a scalar loss (a fixed linear read of the outputs), on
// every parameter tensor and a sample of its entries.
func TestCNNGradient(t *testing.T) {
	r := newRand(7)
	n := newCNN([3]int{3, 4, 5}, 3, r)
	for _, p := range n.params() {
		for i := range p {
			p[i] += float32(0.05 * r.NormFloat64()) // non-zero biases
		}
	}
	a := n.newActs()
	for i := range a.x {
		a.x[i] = float32(r.NormFloat64())
	}
	x := append([]float32(nil), a.x...)
	coef := []float32{0.7, -1.3, 0.4}
	loss := func() float64 {
		copy(a.x, x)
		n.forward(a)
		var l float64
		for i, c := range coef {
			l += float64(c * a.out[i])
		}
		return l
	}
	loss()
	g := n.zeroLike()
	n.backward(a, coef, g, &scratch{})
	names := []string{"conv1.w", "conv1.b", "conv2.w", "conv2.b", "conv3.w", "conv3.b", "fc.w", "fc.b"}
	params, grads := n.params(), g.params()
	for pi, p := range params {
		checked := 0
		for i := 0; i < len(p) && checked < 12; i += 1 + len(p)/12 {
			old := p[i]
			const h = 1e-3
			p[i] = old + h
			lp := loss()
			p[i] = old - h
			lm := loss()
			p[i] = old
			num := (lp - lm) / (2 * h)
			got := float64(grads[pi][i])
			// A step may cross a ReLU or pooling switch; such entries
			// are rare and differ a lot, so compare most entries tightly.
			if math.Abs(num-got) > 2e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s[%d]: analytic %.5f, numeric %.5f", names[pi], i, got, num)
			}
			checked++
		}
	}
}

// TestContrastiveGradient checks contrastiveGrad against central
// differences of contrastiveLoss, with a repeated text (soft targets).
func TestContrastiveGradient(t *testing.T) {
	r := newRand(3)
	const B = 5
	ui, ut := make([][]float32, B), make([][]float32, B)
	for k := range B {
		ui[k], ut[k] = make([]float32, Dim), make([]float32, Dim)
		for i := range Dim {
			ui[k][i] = float32(0.2 * r.NormFloat64())
			ut[k][i] = float32(0.2 * r.NormFloat64())
		}
	}
	texts := []string{"a", "b", "a", "c", "d"}
	dui, dut := contrastiveGrad(ui, ut, texts)
	for _, c := range []struct {
		v [][]float32
		g [][]float32
	}{{ui, dui}, {ut, dut}} {
		for k := range B {
			for i := 0; i < Dim; i += 9 {
				old := c.v[k][i]
				const h = 1e-3
				c.v[k][i] = old + h
				lp := contrastiveLoss(ui, ut, texts)
				c.v[k][i] = old - h
				lm := contrastiveLoss(ui, ut, texts)
				c.v[k][i] = old
				num := (lp - lm) / (2 * h)
				if math.Abs(num-float64(c.g[k][i])) > 2e-3*math.Max(1, math.Abs(num)) {
					t.Errorf("[%d][%d]: analytic %.5f, numeric %.5f", k, i, c.g[k][i], num)
				}
			}
		}
	}
}
