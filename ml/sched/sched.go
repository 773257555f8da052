// Package sched implements the diffusion samplers Stable Diffusion uses at
// inference, in Go, matching diffusers' DDIMScheduler,
// EulerDiscreteScheduler and DPMSolverMultistepScheduler (DPM++ 2M) for the
// configurations SD 1.x uses. Schedule math is float64; latents are float32
// and are updated in place, so a run allocates only at construction (and one
// latent-sized buffer for DPM++ 2M's history).
//
// A Scheduler is built for one run (New) and is not safe for concurrent use.
// The denoising loop, for steps i = 0..Len()-1:
//
//	x := initial noise · InitNoiseSigma()
//	for i, t := range s.Timesteps() {
//		in := x · InputScale(i)        // what the UNet sees
//		eps := unet(in, t, context)     // after classifier-free guidance
//		s.Step(i, eps, x, noise)        // x ← x_{i+1}
//	}
//
// Run does exactly that with a callback for the model. See README.md for
// the formulas.
package sched

import (
	"context"
	"fmt"
)

// NoiseFunc fills dst with independent standard-normal values. Only
// stochastic steps (DDIM with eta > 0) call it, once per Step with dst the
// size of the whole latent batch. To keep every sample of a batch
// reproducible on its own, fill each sample's slice from that sample's own
// stream (face0.NoiseStreams does).
type NoiseFunc func(dst []float32)

// Scheduler is one configured sampler for one run of Len() steps.
type Scheduler interface {
	// Kind names the sampler.
	Kind() Kind
	// Len is the number of steps, which is the number of model calls.
	Len() int
	// Timesteps are the training timesteps the model is evaluated at, one
	// per step, descending. They are integers except for Euler with
	// linspace spacing. The slice must not be modified.
	Timesteps() []float64
	// InitNoiseSigma scales standard-normal noise into the first latent.
	InitNoiseSigma() float64
	// InputScale is the factor the latent is multiplied by before the model
	// sees it at step i (diffusers' scale_model_input): 1/sqrt(σ_i²+1) for
	// Euler, 1 for the others.
	InputScale(i int) float64
	// NeedsNoise reports whether Step calls its NoiseFunc.
	NeedsNoise() bool
	// Step advances sample (updated in place) from step i to step i+1 given
	// the model output at step i. Steps must be taken in order; the first
	// may be any i (for img2img, start at the step AddNoise noised to).
	Step(i int, modelOutput, sample []float32, noise NoiseFunc) error
	// Denoised writes the prediction of x_0 at step i into dst (for
	// previews). It does not change the scheduler's state.
	Denoised(dst, modelOutput, sample []float32, i int) error
	// AddNoise writes x0 noised to step i's level into dst, in the scale
	// Step expects (img2img: start the loop at i).
	AddNoise(dst, x0, noise []float32, i int) error
}

// New builds a sampler of kind for a run of steps steps under c.
func New(kind Kind, c Config, steps int) (Scheduler, error) {
	if err := c.Validate(kind); err != nil {
		return nil, err
	}
	s, err := NewSchedule(c)
	if err != nil {
		return nil, err
	}
	switch kind {
	case DDIM:
		return newDDIM(c, s, steps)
	case Euler:
		return newEuler(c, s, steps)
	case DPMPP2M:
		return newDPM(c, s, steps)
	}
	return nil, fmt.Errorf("sched: unknown sampler %q", kind)
}

// Model evaluates the (guided) model at step i, timestep t, on the scaled
// latent in, and returns its output (ε or v, the same size as in). in is
// reused between calls; the returned slice is only read before the next
// call.
type Model func(ctx context.Context, i int, t float64, in []float32) ([]float32, error)

// Run runs s from step 0 to the end on x (which holds the initial latent,
// already multiplied by InitNoiseSigma) in place, calling model once per
// step. It stops with ctx's error when ctx is cancelled between steps.
func Run(ctx context.Context, s Scheduler, x []float32, model Model, noise NoiseFunc) error {
	in := make([]float32, len(x))
	for i, t := range s.Timesteps() {
		if err := ctx.Err(); err != nil {
			return err
		}
		scale := float32(s.InputScale(i))
		for j, v := range x {
			in[j] = v * scale
		}
		out, err := model(ctx, i, t, in)
		if err != nil {
			return fmt.Errorf("sched: step %d (t=%g): %w", i, t, err)
		}
		if err := s.Step(i, out, x, noise); err != nil {
			return err
		}
	}
	return nil
}

// stepper tracks the order of Step calls, shared by the samplers.
type stepper struct {
	n    int
	next int // index the next Step must have; -1 before the first
}

func (st *stepper) check(i int, modelOutput, sample []float32) error {
	if i < 0 || i >= st.n {
		return fmt.Errorf("sched: step %d out of range [0, %d)", i, st.n)
	}
	if st.next >= 0 && i != st.next {
		return fmt.Errorf("sched: step %d called after step %d; steps must be taken in order", i, st.next-1)
	}
	if len(modelOutput) != len(sample) {
		return fmt.Errorf("sched: model output has %d values, sample has %d", len(modelOutput), len(sample))
	}
	return nil
}

func checkIndex(i, n int) error {
	if i < 0 || i >= n {
		return fmt.Errorf("sched: step %d out of range [0, %d)", i, n)
	}
	return nil
}

func checkLens(a, b, c []float32) error {
	if len(a) != len(b) || len(b) != len(c) {
		return fmt.Errorf("sched: length mismatch: %d, %d, %d", len(a), len(b), len(c))
	}
	return nil
}
