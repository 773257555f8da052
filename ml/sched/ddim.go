package sched

import (
	"errors"
	"math"
)

// ddim is DDIM (Song et al. 2021, eq. 12) in diffusers' form. With
// a_t = sqrt(ᾱ_t), b_t = sqrt(1-ᾱ_t) and ε the predicted noise:
//
//	x̂_0    = (x_t - b_t ε) / a_t
//	σ_η²   = η² · (1-ᾱ_prev)/(1-ᾱ_t) · (1 - ᾱ_t/ᾱ_prev)
//	x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1-ᾱ_prev-σ_η²) ε + σ_η z,  z ~ N(0, I)
//
// where prev is the next timestep of the schedule and, after the last, ᾱ_prev
// is 1 if set_alpha_to_one else ᾱ_0. (diffusers takes prev = t - N÷n, the
// same for leading spacing and for trailing when n divides N, but a
// timestep the run never visits otherwise, e.g. linspace: 999 → 949 while
// the model is next evaluated at 946, which breaks exactness even for a
// perfect model.) With ᾱ_prev = ᾱ_0 the run ends at the noise
// level of timestep 0, not at x̂_0 itself, as in diffusers.
type ddim struct {
	stepper
	c     Config
	ts    []float64
	steps []ddimStep
	z     []float32 // noise scratch for eta > 0
}

type ddimStep struct {
	a, b  float64 // sqrt(ᾱ_t), sqrt(1-ᾱ_t)
	aPrev float64 // sqrt(ᾱ_prev)
	dir   float64 // sqrt(1-ᾱ_prev-σ_η²)
	std   float64 // σ_η
}

func newDDIM(c Config, s *Schedule, n int) (*ddim, error) {
	ts, err := makeTimesteps(DDIM, c, n, c.NumTrainTimesteps)
	if err != nil {
		return nil, err
	}
	final := s.AlphasCumprod[0]
	if c.SetAlphaToOne {
		final = 1
	}
	d := &ddim{stepper: stepper{n: n, next: -1}, c: c, ts: ts, steps: make([]ddimStep, n)}
	for i, tf := range ts {
		t := int(tf)
		at := s.AlphasCumprod[t]
		ap := final
		if i+1 < n {
			ap = s.AlphasCumprod[int(ts[i+1])]
		}
		variance := (1 - ap) / (1 - at) * (1 - at/ap)
		std := c.Eta * math.Sqrt(variance)
		d.steps[i] = ddimStep{
			a: math.Sqrt(at), b: math.Sqrt(1 - at),
			aPrev: math.Sqrt(ap),
			dir:   math.Sqrt(math.Max(0, 1-ap-std*std)),
			std:   std,
		}
	}
	return d, nil
}

func (d *ddim) Kind() Kind               { return DDIM }
func (d *ddim) Len() int                 { return d.n }
func (d *ddim) Timesteps() []float64     { return d.ts }
func (d *ddim) InitNoiseSigma() float64  { return 1 }
func (d *ddim) InputScale(i int) float64 { return 1 }
func (d *ddim) NeedsNoise() bool         { return d.c.Eta > 0 }

// predict returns (x̂_0, ε̂) from one model output value at step coefficients p.
func (d *ddim) predict(p *ddimStep, out, x float64) (x0, eps float64) {
	if d.c.PredictionType == VPrediction {
		// v = a ε - b x_0 (Salimans & Ho 2022) ⇒ x_0 = a x - b v, ε = a v + b x.
		x0, eps = p.a*x-p.b*out, p.a*out+p.b*x
	} else {
		x0, eps = (x-p.b*out)/p.a, out
	}
	if d.c.ClipSample {
		x0 = max(-d.c.ClipSampleRange, min(d.c.ClipSampleRange, x0))
	}
	return x0, eps
}

func (d *ddim) Step(i int, modelOutput, sample []float32, noise NoiseFunc) error {
	if err := d.check(i, modelOutput, sample); err != nil {
		return err
	}
	p := &d.steps[i]
	if p.std > 0 {
		if noise == nil {
			return errors.New("sched: DDIM with eta > 0 needs a NoiseFunc")
		}
		// One scratch buffer per run, sized on first use.
		if len(d.z) != len(sample) {
			d.z = make([]float32, len(sample))
		}
		z := d.z
		noise(z)
		for j, x := range sample {
			x0, eps := d.predict(p, float64(modelOutput[j]), float64(x))
			sample[j] = float32(p.aPrev*x0 + p.dir*eps + p.std*float64(z[j]))
		}
	} else {
		for j, x := range sample {
			x0, eps := d.predict(p, float64(modelOutput[j]), float64(x))
			sample[j] = float32(p.aPrev*x0 + p.dir*eps)
		}
	}
	d.next = i + 1
	return nil
}

func (d *ddim) Denoised(dst, modelOutput, sample []float32, i int) error {
	if err := checkIndex(i, d.n); err != nil {
		return err
	}
	if err := checkLens(dst, modelOutput, sample); err != nil {
		return err
	}
	p := &d.steps[i]
	for j, x := range sample {
		x0, _ := d.predict(p, float64(modelOutput[j]), float64(x))
		dst[j] = float32(x0)
	}
	return nil
}

// AddNoise is the forward process x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) z.
func (d *ddim) AddNoise(dst, x0, noise []float32, i int) error {
	if err := checkIndex(i, d.n); err != nil {
		return err
	}
	if err := checkLens(dst, x0, noise); err != nil {
		return err
	}
	p := &d.steps[i]
	for j := range dst {
		dst[j] = float32(p.a*float64(x0[j]) + p.b*float64(noise[j]))
	}
	return nil
}
