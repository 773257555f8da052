package face0

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/face0/face0/ml/sched"
)

// The sampler node's loop, end to end with a stand-in UNet: per-sample
// seeds make sample b of a batch identical to a batch of one at seed+b,
// even with stochastic DDIM steps, as long as the UNet treats batch rows
// independently.
func TestGuidedLoopReproducesPerSample(t *testing.T) {
	shape := ContextShape{Tokens: 6, Dim: 4, FaceTokens: 3}
	const per = 4 * 4 * 4
	g := Guidance{W: 7.5, C: 0.6, A: 0}
	plan := g.Plan()
	ctxLen := shape.Tokens * shape.Dim

	run := func(batch int, seed uint64) []float32 {
		c := sched.SD15(sched.DDIM)
		c.Eta = 0.5
		s, err := sched.New(sched.DDIM, c, 8)
		if err != nil {
			t.Fatal(err)
		}
		prompt := make([]float32, ctxLen)
		empty := make([]float32, ctxLen)
		for i := range prompt {
			prompt[i], empty[i] = float32(i)*0.01, -0.02
		}
		faces := make([]float32, batch*shape.FaceTokens*shape.Dim)
		for b := range batch {
			e, _ := RandomEmbedding(nil, shape.FaceTokens*shape.Dim, seed+uint64(b))
			copy(faces[b*len(e):], e)
		}
		ctx, err := plan.Contexts(nil, shape, batch, Conditioning{Prompt: prompt, Empty: empty, Face: faces})
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, batch*per)
		if err := BatchLatentNoise(x, batch, seed); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			x[i] *= float32(s.InitNoiseSigma())
		}
		eps := make([]float32, len(x))
		var in []float32
		calls := 0
		unet := func(in []float32, tt float64) []float32 {
			calls++
			out := make([]float32, len(in))
			rows := len(in) / per
			for r := range rows {
				m := 0.0
				for _, v := range ctx[r*ctxLen : (r+1)*ctxLen] {
					m += float64(v)
				}
				for j := r * per; j < (r+1)*per; j++ {
					out[j] = float32(math.Tanh(float64(in[j])) + 0.01*m + tt/5000)
				}
			}
			return out
		}
		noise := NewStepNoise(batch, seed)
		model := func(_ context.Context, i int, tt float64, scaled []float32) ([]float32, error) {
			in = plan.Replicate(in, scaled, 1)
			if err := plan.Combine(eps, unet(in, tt)); err != nil {
				return nil, err
			}
			return eps, nil
		}
		if err := sched.Run(context.Background(), s, x, model, noise.Fill); err != nil {
			t.Fatal(err)
		}
		if calls != s.Len() {
			t.Errorf("%d UNet calls for %d steps", calls, s.Len())
		}
		return x
	}
	three := run(3, 50)
	for b := range 3 {
		one := run(1, 50+uint64(b))
		if !slices.Equal(one, three[b*per:(b+1)*per]) {
			t.Errorf("sample %d of the batch differs from seed %d alone", b, 50+b)
		}
	}
}
