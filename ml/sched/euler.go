package sched

import "math"

// euler is the Euler method on the probability-flow ODE in the
// variance-exploding parametrisation (Karras et al. 2022, Alg. 2 with
// S_churn = 0), as diffusers' EulerDiscreteScheduler. The latent lives in
// VE scale, x = x_0 + σ ε, so the model (trained on VP x_t = sqrt(ᾱ) x_0 +
// sqrt(1-ᾱ) ε) sees x/sqrt(σ²+1). With σ_i = interp(t_i) and σ_n = 0:
//
//	x̂_0     = x - σ_i ε                        (ε-prediction)
//	d       = (x - x̂_0)/σ_i                    (= ε)
//	x_{i+1} = x + (σ_{i+1} - σ_i) d
//
// init_noise_sigma follows diffusers: max σ_i for linspace and trailing
// spacing, sqrt(max σ_i² + 1) for leading.
type euler struct {
	stepper
	c      Config
	ts     []float64
	sigmas []float64 // n+1 values, the last the final sigma
	init   float64
}

func newEuler(c Config, s *Schedule, n int) (*euler, error) {
	ts, err := makeTimesteps(Euler, c, n, c.NumTrainTimesteps)
	if err != nil {
		return nil, err
	}
	e := &euler{stepper: stepper{n: n, next: -1}, c: c, ts: ts, sigmas: make([]float64, n+1)}
	maxSigma := 0.0
	for i, t := range ts {
		e.sigmas[i] = s.SigmaAt(t)
		maxSigma = max(maxSigma, e.sigmas[i])
	}
	if c.FinalSigmasType == "sigma_min" {
		e.sigmas[n] = s.Sigmas[0]
	}
	e.init = maxSigma
	if c.TimestepSpacing == Leading {
		e.init = math.Sqrt(maxSigma*maxSigma + 1)
	}
	return e, nil
}

func (e *euler) Kind() Kind              { return Euler }
func (e *euler) Len() int                { return e.n }
func (e *euler) Timesteps() []float64    { return e.ts }
func (e *euler) InitNoiseSigma() float64 { return e.init }
func (e *euler) NeedsNoise() bool        { return false }

// InputScale is c_in = 1/sqrt(σ²+1), which maps x_0 + σ ε back to the VP
// latent sqrt(ᾱ)(x_0 + σ ε) the model was trained on, since ᾱ = 1/(σ²+1).
func (e *euler) InputScale(i int) float64 {
	if i < 0 || i >= e.n {
		return 1
	}
	s := e.sigmas[i]
	return 1 / math.Sqrt(s*s+1)
}

// x0 predicts x_0 from one model output value at noise level sigma.
func (e *euler) x0(sigma, out, x float64) float64 {
	if e.c.PredictionType == VPrediction {
		// diffusers: x̂_0 = v·(-σ/sqrt(σ²+1)) + x/(σ²+1), i.e. a x_in - b v
		// with x_in = x/sqrt(σ²+1), a = 1/sqrt(σ²+1), b = σ/sqrt(σ²+1),
		// expressed in VE scale (divided by a).
		s2 := sigma*sigma + 1
		return out*(-sigma/math.Sqrt(s2)) + x/s2
	}
	return x - sigma*out
}

func (e *euler) Step(i int, modelOutput, sample []float32, _ NoiseFunc) error {
	if err := e.check(i, modelOutput, sample); err != nil {
		return err
	}
	sigma, dt := e.sigmas[i], e.sigmas[i+1]-e.sigmas[i]
	if e.c.PredictionType == Epsilon {
		// d = (x - (x - σ ε))/σ = ε exactly; skip the cancellation.
		for j, x := range sample {
			sample[j] = float32(float64(x) + dt*float64(modelOutput[j]))
		}
	} else {
		for j, x := range sample {
			xf := float64(x)
			d := (xf - e.x0(sigma, float64(modelOutput[j]), xf)) / sigma
			sample[j] = float32(xf + dt*d)
		}
	}
	e.next = i + 1
	return nil
}

func (e *euler) Denoised(dst, modelOutput, sample []float32, i int) error {
	if err := checkIndex(i, e.n); err != nil {
		return err
	}
	if err := checkLens(dst, modelOutput, sample); err != nil {
		return err
	}
	for j, x := range sample {
		dst[j] = float32(e.x0(e.sigmas[i], float64(modelOutput[j]), float64(x)))
	}
	return nil
}

// AddNoise is x = x_0 + σ_i z, the VE forward process.
func (e *euler) AddNoise(dst, x0, noise []float32, i int) error {
	if err := checkIndex(i, e.n); err != nil {
		return err
	}
	if err := checkLens(dst, x0, noise); err != nil {
		return err
	}
	for j := range dst {
		dst[j] = float32(float64(x0[j]) + e.sigmas[i]*float64(noise[j]))
	}
	return nil
}
