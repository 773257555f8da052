package face0

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// direct is the paper's formula written out term by term (Sec. 2.2), the
// reference the planned, batched combination must reproduce.
func direct(w, c, a float64, eu, ed, ef, edf float64) float64 {
	cond := c*edf + (1-c)*(a*ef+(1-a)*ed)
	return w*cond + (1-w)*eu
}

func TestGuidanceMatchesPaperFormula(t *testing.T) {
	tests := []struct {
		g        Guidance
		branches []Branch
	}{
		{DefaultGuidance(), []Branch{Uncond, TextFace}},                            // plain CFG on text+face
		{Guidance{W: 7.5, C: 0.5, A: 0}, []Branch{Uncond, Text, TextFace}},         // artistic
		{Guidance{W: 7.5, C: 0.7, A: 0}, []Branch{Uncond, Text, TextFace}},         // artistic
		{Guidance{W: 7.5, C: 1.4, A: 1}, []Branch{Uncond, Face, TextFace}},         // negative face-only weight
		{Guidance{W: 7.5, C: 0.4, A: 0.3}, []Branch{Uncond, Text, Face, TextFace}}, // all four
		{Guidance{W: 3, C: 0, A: 1}, []Branch{Uncond, Face}},                       // face only
		{Guidance{W: 5, C: 0, A: 0}, []Branch{Uncond, Text}},                       // text only, no face
		{Guidance{W: 1, C: 1, A: 0}, []Branch{TextFace}},                           // no guidance
		{Guidance{W: 0, C: 1, A: 0}, []Branch{Uncond}},                             // unconditioned
		{Guidance{W: -2, C: 0.25, A: 0.5}, []Branch{Uncond, Text, Face, TextFace}},
	}
	const batch, per = 3, 40
	n := batch * per
	r := rand.New(rand.NewPCG(1, 2))
	// The UNet's outputs for each branch, all four computed.
	var eps [4][]float32
	for b := range eps {
		eps[b] = make([]float32, n)
		for j := range eps[b] {
			eps[b][j] = float32(r.NormFloat64())
		}
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("w=%g,c=%g,a=%g", tc.g.W, tc.g.C, tc.g.A), func(t *testing.T) {
			coef := tc.g.Coefficients()
			if s := coef[0] + coef[1] + coef[2] + coef[3]; math.Abs(s-1) > 1e-12 {
				t.Errorf("coefficients sum to %g", s)
			}
			p := tc.g.Plan()
			if !slices.Equal(p.Branches, tc.branches) {
				t.Errorf("branches %v, want %v", p.Branches, tc.branches)
			}
			// What the one batched UNet call returns: the plan's branches, branch-major.
			var out []float32
			for _, b := range p.Branches {
				out = append(out, eps[b]...)
			}
			got := make([]float32, n)
			if err := p.Combine(got, out); err != nil {
				t.Fatal(err)
			}
			// All four branches, no dropping.
			full := Plan{Branches: []Branch{Uncond, Text, Face, TextFace}, Coeffs: coef[:]}
			all := make([]float32, n)
			if err := full.Combine(all, slices.Concat(eps[0], eps[1], eps[2], eps[3])); err != nil {
				t.Fatal(err)
			}
			for j := range got {
				want := direct(tc.g.W, tc.g.C, tc.g.A, float64(eps[Uncond][j]), float64(eps[Text][j]), float64(eps[Face][j]), float64(eps[TextFace][j]))
				if math.Abs(float64(got[j])-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Fatalf("[%d] planned %g, paper %g", j, got[j], want)
				}
				if math.Abs(float64(all[j])-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Fatalf("[%d] all four %g, paper %g", j, all[j], want)
				}
				if math.Abs(float64(got[j]-all[j])) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Fatalf("[%d] planned %g, all four %g", j, got[j], all[j])
				}
			}
		})
	}
	if err := DefaultGuidance().Plan().Combine(make([]float32, 4), make([]float32, 7)); err == nil {
		t.Error("wrong output size accepted")
	}
}

func TestContexts(t *testing.T) {
	shape := ContextShape{Tokens: 5, Dim: 2, FaceTokens: 2}
	const batch = 2
	fill := func(n int, base float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = base + float32(i)
		}
		return v
	}
	prompt := fill(batch*10, 100) // per sample
	empty := fill(10, 200)        // shared
	neg := fill(10, 300)          // shared
	face := fill(batch*4, 400)    // per sample
	all := Guidance{W: 7.5, C: 0.4, A: 0.3}.Plan()

	for _, withNeg := range []bool{false, true} {
		c := Conditioning{Prompt: prompt, Empty: empty, Face: face}
		if withNeg {
			c.Negative = neg
		}
		ctx, err := all.Contexts(nil, shape, batch, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(ctx) != 4*batch*10 {
			t.Fatalf("len %d", len(ctx))
		}
		for k, br := range all.Branches {
			for b := range batch {
				row := ctx[(k*batch+b)*10 : (k*batch+b+1)*10]
				var text, tail []float32
				switch br {
				case Uncond:
					text, tail = empty, make([]float32, 4)
					if withNeg {
						text = neg
					}
				case Text:
					text, tail = prompt[b*10:], make([]float32, 4)
				case Face:
					text, tail = empty, face[b*4:(b+1)*4]
				case TextFace:
					text, tail = prompt[b*10:], face[b*4:(b+1)*4]
				}
				// The first Tokens-FaceTokens rows are the text encoder's, the last
				// FaceTokens rows are the face tokens or zeros.
				if !slices.Equal(row[:6], text[:6]) || !slices.Equal(row[6:], tail) {
					t.Errorf("neg=%v %v sample %d: %v", withNeg, br, b, row)
				}
			}
		}
	}

	// The default plan needs only Uncond and TextFace; missing pieces it
	// needs are errors, missing pieces it does not need are fine.
	p := DefaultGuidance().Plan()
	if _, err := p.Contexts(nil, shape, batch, Conditioning{Prompt: prompt, Empty: empty}); err == nil {
		t.Error("missing Face accepted")
	}
	if _, err := p.Contexts(nil, shape, batch, Conditioning{Prompt: prompt[:7], Empty: empty, Face: face}); err == nil {
		t.Error("bad Prompt size accepted")
	}
	textOnly := Guidance{W: 7.5}.Plan()
	if p.NeedsFace() != true || textOnly.NeedsFace() {
		t.Error("NeedsFace")
	}
	if _, err := textOnly.Contexts(nil, shape, batch, Conditioning{Prompt: prompt, Empty: empty}); err != nil {
		t.Errorf("text-only without a face: %v", err)
	}
	// dst is reused.
	buf := make([]float32, 0, 1000)
	out, _ := p.Contexts(buf, shape, batch, Conditioning{Prompt: prompt, Empty: empty, Face: face})
	if &out[0] != &buf[:1][0] {
		t.Error("dst not reused")
	}
}

func TestReplicate(t *testing.T) {
	p := Guidance{W: 7.5, C: 0.5}.Plan()
	x := []float32{1, 2, 3}
	got := p.Replicate(nil, x, 0.5)
	want := []float32{0.5, 1, 1.5, 0.5, 1, 1.5, 0.5, 1, 1.5}
	if !slices.Equal(got, want) {
		t.Errorf("got %v", got)
	}
}

func TestBranchString(t *testing.T) {
	if TextFace.String() != "text+face" || Branch(9).String() != "Branch(9)" {
		t.Error(TextFace.String(), Branch(9).String())
	}
}
