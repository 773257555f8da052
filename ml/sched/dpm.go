package sched

import (
	"math"
	"sort"
)

// dpm is the multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++", Alg. 2)
// as diffusers' DPMSolverMultistepScheduler with algorithm_type dpmsolver++:
// solver_order 2 is "DPM++ 2M". It integrates the ODE in the data
// prediction x̂_0 over the half log-SNR λ = log(α/σ). The latent is VP,
// x = α x_0 + σ ε with α = 1/sqrt(σ_VE²+1), σ = σ_VE α, so the model input
// needs no scaling and init_noise_sigma is 1.
//
// With h = λ_{i+1} - λ_i, step i (s0 = i, s1 = i-1, t = i+1) is
//
//	x̂_0 = (x - σ_s0 ε)/α_s0                          (ε-prediction)
//	first order:  x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) D0
//	second order: x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) D0 - ½ α_t (e^{-h} - 1) D1   (midpoint)
//	              x_t = (σ_t/σ_s0) x - α_t (e^{-h} - 1) D0 + α_t ((e^{-h} - 1)/h + 1) D1  (heun)
//
// with D0 = x̂_0(i), D1 = (x̂_0(i) - x̂_0(i-1))/r0, r0 = (λ_i - λ_{i-1})/h.
// The first step is first order (no history); the last is first order when
// final_sigmas_type is zero (σ_t = 0 makes λ_t infinite and the step is then
// exactly x_t = x̂_0), when euler_at_final, or when lower_order_final and
// there are fewer than 15 steps.
type dpm struct {
	stepper
	c         Config
	ts        []float64
	sigmas    []float64 // VE σ per step, n+1 values
	prev      []float32 // x̂_0 of the previous step
	lowerNums int       // steps taken so far, capped at the order
}

// dpmLastTimestep is diffusers' last_timestep: N minus the number of
// timesteps whose λ_t falls below lambda_min_clipped (numpy.searchsorted on
// the ascending flipped λ), so the schedule starts where λ is still usable.
func dpmLastTimestep(c Config, s *Schedule) int {
	N := c.NumTrainTimesteps
	clipped := sort.Search(N, func(k int) bool { return s.lambdaT(N-1-k) >= c.LambdaMinClipped })
	return N - clipped
}

func newDPM(c Config, s *Schedule, n int) (*dpm, error) {
	ts, err := makeTimesteps(DPMPP2M, c, n, dpmLastTimestep(c, s))
	if err != nil {
		return nil, err
	}
	d := &dpm{stepper: stepper{n: n, next: -1}, c: c, ts: ts, sigmas: make([]float64, n+1)}
	for i, t := range ts {
		d.sigmas[i] = s.SigmaAt(t)
	}
	if c.FinalSigmasType == "sigma_min" {
		d.sigmas[n] = s.Sigmas[0]
	}
	return d, nil
}

func (d *dpm) Kind() Kind               { return DPMPP2M }
func (d *dpm) Len() int                 { return d.n }
func (d *dpm) Timesteps() []float64     { return d.ts }
func (d *dpm) InitNoiseSigma() float64  { return 1 }
func (d *dpm) InputScale(i int) float64 { return 1 }
func (d *dpm) NeedsNoise() bool         { return false }

// x0 is diffusers' convert_model_output for dpmsolver++.
func (d *dpm) x0(alpha, sigma, out, x float64) float64 {
	if d.c.PredictionType == VPrediction {
		return alpha*x - sigma*out
	}
	return (x - sigma*out) / alpha
}

func (d *dpm) Step(i int, modelOutput, sample []float32, _ NoiseFunc) error {
	if err := d.check(i, modelOutput, sample); err != nil {
		return err
	}
	if len(d.prev) != len(sample) {
		d.prev = make([]float32, len(sample))
		d.lowerNums = 0
	}
	aS0, sS0 := vpFromSigma(d.sigmas[i])
	aT, sT := vpFromSigma(d.sigmas[i+1])
	lowerFinal := i == d.n-1 && (d.c.EulerAtFinal || (d.c.LowerOrderFinal && d.n < 15) || d.c.FinalSigmasType == "zero")
	firstOrder := d.c.SolverOrder == 1 || d.lowerNums < 1 || lowerFinal

	switch {
	case d.sigmas[i+1] == 0:
		// σ_t = 0: h = ∞, e^{-h} = 0, x_t = x̂_0 (only reached first order).
		for j, x := range sample {
			x0 := d.x0(aS0, sS0, float64(modelOutput[j]), float64(x))
			d.prev[j] = float32(x0)
			sample[j] = float32(x0)
		}
	case firstOrder:
		// λ = -log σ_VE, so h = log σ_VE(s0) - log σ_VE(t).
		h := math.Log(d.sigmas[i]) - math.Log(d.sigmas[i+1])
		ratio, c0 := sT/sS0, -aT*math.Expm1(-h)
		for j, x := range sample {
			x0 := d.x0(aS0, sS0, float64(modelOutput[j]), float64(x))
			d.prev[j] = float32(x0)
			sample[j] = float32(ratio*float64(x) + c0*x0)
		}
	default:
		h := math.Log(d.sigmas[i]) - math.Log(d.sigmas[i+1])
		h0 := math.Log(d.sigmas[i-1]) - math.Log(d.sigmas[i])
		r0 := h0 / h
		ratio, c0 := sT/sS0, -aT*math.Expm1(-h)
		c1 := 0.5 * c0 // midpoint
		if d.c.SolverType == "heun" {
			c1 = aT * (math.Expm1(-h)/h + 1)
		}
		for j, x := range sample {
			m0 := d.x0(aS0, sS0, float64(modelOutput[j]), float64(x))
			d1 := (m0 - float64(d.prev[j])) / r0
			d.prev[j] = float32(m0)
			sample[j] = float32(ratio*float64(x) + c0*m0 + c1*d1)
		}
	}
	if d.lowerNums < d.c.SolverOrder {
		d.lowerNums++
	}
	d.next = i + 1
	return nil
}

func (d *dpm) Denoised(dst, modelOutput, sample []float32, i int) error {
	if err := checkIndex(i, d.n); err != nil {
		return err
	}
	if err := checkLens(dst, modelOutput, sample); err != nil {
		return err
	}
	a, s := vpFromSigma(d.sigmas[i])
	for j, x := range sample {
		dst[j] = float32(d.x0(a, s, float64(modelOutput[j]), float64(x)))
	}
	return nil
}

// AddNoise is the VP forward process x = α_i x_0 + σ_i z.
func (d *dpm) AddNoise(dst, x0, noise []float32, i int) error {
	if err := checkIndex(i, d.n); err != nil {
		return err
	}
	if err := checkLens(dst, x0, noise); err != nil {
		return err
	}
	a, s := vpFromSigma(d.sigmas[i])
	for j := range dst {
		dst[j] = float32(a*float64(x0[j]) + s*float64(noise[j]))
	}
	return nil
}
