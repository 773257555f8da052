package sched

import (
	"fmt"
	"math"
)

// Schedule is the training noise schedule shared by every sampler: the betas
// of Ho et al. (2020), ᾱ_t = Π_{s<=t} (1-β_s), and the equivalent
// variance-exploding noise levels σ_t = sqrt((1-ᾱ_t)/ᾱ_t) (Karras et al.
// 2022, eq. for VP→VE). Everything is float64: the cumulative product over
// 1000 factors loses about 1e-5 relative precision in float32, and the
// schedule is computed once per run, so precision is free.
//
// diffusers builds these in float32 (torch.linspace, torch.cumprod), so its
// values differ from these by about 1e-6 relative; the samplers are not
// sensitive to that.
type Schedule struct {
	// Betas are β_0..β_{N-1}.
	Betas []float64
	// AlphasCumprod are ᾱ_0..ᾱ_{N-1}.
	AlphasCumprod []float64
	// Sigmas are σ_t = sqrt((1-ᾱ_t)/ᾱ_t) for t = 0..N-1, increasing.
	Sigmas []float64
}

// NewSchedule builds the schedule a Config describes.
func NewSchedule(c Config) (*Schedule, error) {
	n := c.NumTrainTimesteps
	if n < 2 {
		return nil, fmt.Errorf("sched: num_train_timesteps %d: want at least 2", n)
	}
	var betas []float64
	switch {
	case c.TrainedBetas != nil:
		if len(c.TrainedBetas) != n {
			return nil, fmt.Errorf("sched: trained_betas has %d values, num_train_timesteps is %d", len(c.TrainedBetas), n)
		}
		betas = append([]float64(nil), c.TrainedBetas...)
	case c.BetaSchedule == "linear":
		// diffusers: torch.linspace(beta_start, beta_end, N).
		betas = linspace(c.BetaStart, c.BetaEnd, n)
	case c.BetaSchedule == "scaled_linear":
		// diffusers: torch.linspace(beta_start**0.5, beta_end**0.5, N) ** 2,
		// the latent-diffusion schedule (linear in sqrt(β)).
		betas = linspace(math.Sqrt(c.BetaStart), math.Sqrt(c.BetaEnd), n)
		for i, b := range betas {
			betas[i] = b * b
		}
	default:
		return nil, fmt.Errorf("sched: beta_schedule %q is not supported (want linear or scaled_linear)", c.BetaSchedule)
	}
	s := &Schedule{Betas: betas, AlphasCumprod: make([]float64, n), Sigmas: make([]float64, n)}
	p := 1.0
	for i, b := range betas {
		if !(b > 0 && b < 1) {
			return nil, fmt.Errorf("sched: beta_%d = %g: betas must lie in (0, 1)", i, b)
		}
		p *= 1 - b
		s.AlphasCumprod[i] = p
		s.Sigmas[i] = math.Sqrt((1 - p) / p)
	}
	return s, nil
}

// SigmaAt is σ at a possibly fractional timestep t, interpolated linearly in
// σ between the neighbouring integer timesteps and clamped at the ends,
// exactly as numpy.interp(t, arange(N), sigmas) in diffusers' Euler and
// DPM-Solver set_timesteps.
func (s *Schedule) SigmaAt(t float64) float64 {
	n := len(s.Sigmas)
	if t <= 0 {
		return s.Sigmas[0]
	}
	if t >= float64(n-1) {
		return s.Sigmas[n-1]
	}
	j := int(math.Floor(t))
	f := t - float64(j)
	if f == 0 {
		return s.Sigmas[j]
	}
	return (s.Sigmas[j+1]-s.Sigmas[j])*f + s.Sigmas[j]
}

// lambdaT is the half log-SNR λ_t = log(sqrt(ᾱ_t)) - log(sqrt(1-ᾱ_t)) of
// DPM-Solver (Lu et al. 2022, eq. 3.2), which is -log σ_t.
func (s *Schedule) lambdaT(t int) float64 { return -math.Log(s.Sigmas[t]) }

// vpFromSigma converts a VE noise level σ to the VP coefficients of
// x_t = α_t x_0 + σ_t ε: α_t = 1/sqrt(σ²+1), σ_t = σ α_t (diffusers'
// _sigma_to_alpha_sigma_t).
func vpFromSigma(sigma float64) (alpha, sigmaT float64) {
	alpha = 1 / math.Sqrt(sigma*sigma+1)
	return alpha, sigma * alpha
}

// linspace is numpy.linspace(start, stop, num) with endpoint=True: element i
// is i*step + start and the last element is exactly stop. Using numpy's
// formula (not start + i*(stop-start)/(num-1)) keeps ties such as 499.5 on
// the same side when the result is rounded.
func linspace(start, stop float64, num int) []float64 {
	y := make([]float64, num)
	if num == 1 {
		y[0] = start
		return y
	}
	step := (stop - start) / float64(num-1)
	for i := range y {
		y[i] = float64(i)*step + start
	}
	y[num-1] = stop
	return y
}
