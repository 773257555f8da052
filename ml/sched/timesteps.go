package sched

import (
	"fmt"
	"math"
)

// Timestep spacings (Lin et al. 2023, "Common Diffusion Noise Schedules and
// Sample Steps are Flawed", Table 2), as diffusers names them.
const (
	// Leading takes multiples of N/n from 0 and adds steps_offset: SD 1.x's
	// schedule (steps_offset 1 makes 50 DDIM steps 981, 961, ..., 1).
	Leading = "leading"
	// Trailing takes multiples of N/n down from N, minus 1, so the first step
	// is always the last training timestep N-1.
	Trailing = "trailing"
	// Linspace spreads n points evenly over [0, N-1].
	Linspace = "linspace"
)

// roundHalfEven is numpy's round(): ties go to the even neighbour
// (np.round(166.5) == 166), unlike math.Round.
func roundHalfEven(x float64) float64 { return math.RoundToEven(x) }

// makeTimesteps returns the n timesteps, descending, for kind under c's
// spacing. Each scheduler in diffusers has its own variant, reproduced here
// (N = num_train_timesteps, n = steps, ÷ is integer division):
//
//	DDIM, Euler   leading:  t_i = (n-1-i)·(N÷n) + steps_offset
//	              trailing: t_i = round(N - i·N/n) - 1
//	DDIM          linspace: round(linspace(0, N-1, n)) reversed
//	Euler         linspace: float32(linspace(0, N-1, n)) reversed, NOT rounded
//	DPM-Solver    leading:  t_i = (n-i)·(L÷(n+1)) + steps_offset, i = 0..n-1
//	              trailing: t_i = round(L - i·L/n) - 1
//	              linspace: round(linspace(0, L-1, n+1)) reversed, last dropped
//
// where L is DPM-Solver's last timestep, N minus the timesteps clipped by
// lambda_min_clipped (N for SD). round is half-to-even. DPM-Solver uses n+1
// points and drops the final 0 because its last step always goes to the
// final sigma rather than to a timestep.
func makeTimesteps(kind Kind, c Config, n, last int) ([]float64, error) {
	N := c.NumTrainTimesteps
	if n < 1 {
		return nil, fmt.Errorf("sched: steps %d: want at least 1", n)
	}
	if n > N {
		return nil, fmt.Errorf("sched: steps %d: more than num_train_timesteps %d", n, N)
	}
	ts := make([]float64, n)
	switch c.TimestepSpacing {
	case Leading:
		if kind == DPMPP2M {
			ratio := last / (n + 1)
			if ratio < 1 {
				return nil, fmt.Errorf("sched: steps %d: leading spacing needs at most %d steps", n, last-1)
			}
			for i := range ts {
				ts[i] = float64((n-i)*ratio + c.StepsOffset)
			}
		} else {
			ratio := N / n
			for i := range ts {
				ts[i] = float64((n-1-i)*ratio + c.StepsOffset)
			}
		}
	case Trailing:
		// numpy.arange(L, 0, -N/n) computes element i as L + i·d with
		// d = (L - N/n) - L. numpy sizes that range as ceil(L/(N/n)), which
		// float rounding makes n+1 for some n (61, 103, ...), giving a bogus
		// final timestep -1 in diffusers; exactly n are taken here.
		start := float64(N)
		if kind == DPMPP2M {
			start = float64(last)
		}
		d := (start - start/float64(n)) - start
		for i := range ts {
			ts[i] = roundHalfEven(start+float64(i)*d) - 1
		}
	case Linspace:
		var pts []float64
		if kind == DPMPP2M {
			pts = linspace(0, float64(last-1), n+1)[1:]
		} else {
			pts = linspace(0, float64(N-1), n)
		}
		for i, p := range pts {
			switch kind {
			case Euler:
				// np.linspace(..., dtype=np.float32): fractional timesteps
				// the UNet receives as float32.
				ts[len(pts)-1-i] = float64(float32(p))
			default:
				ts[len(pts)-1-i] = roundHalfEven(p)
			}
		}
	default:
		return nil, fmt.Errorf("sched: timestep_spacing %q is not supported (want leading, trailing or linspace)", c.TimestepSpacing)
	}
	for i, t := range ts {
		if t < 0 || t > float64(N-1) {
			return nil, fmt.Errorf("sched: timestep %d of %d is %g, outside [0, %d] (check steps_offset %d)", i, n, t, N-1, c.StepsOffset)
		}
	}
	return ts, nil
}
