package sched

import (
	"math"
	"slices"
	"testing"
)

// The expected values in this file were derived independently of this
// package, in plain Python float64 arithmetic following diffusers' formulas
// (numpy.linspace as i*step + start with the last point set to stop;
// numpy.round as Python's round, half to even):
//
//	sb = linspace(0.00085**0.5, 0.012**0.5, 1000); betas = [b*b for b in sb]
//	ac = cumprod(1 - b);  sigma = sqrt((1-ac)/ac)

func TestScheduleEndpoints(t *testing.T) {
	tests := []struct {
		name            string
		cfg             Config
		ac0, ac999      float64
		sigma0, sigmaMx float64
	}{
		// ᾱ_0 = 1 - β_0 = 1 - 0.00085. σ_999 ≈ 14.6146 and σ_0 ≈ 0.0292 are
		// the well-known SD 1.x sigma_max/sigma_min of k-diffusion.
		{"scaled_linear", SD15(DDIM), 0.99915, 0.004660098513077238, 0.029167158151720367, 14.614641229333639},
		// linear: β from 1e-4 to 0.02, ᾱ_0 = 0.9999.
		{"linear", Defaults(DDIM), 0.9999, 4.035829765375676e-05, math.Sqrt(0.0001 / 0.9999), math.Sqrt((1 - 4.035829765375676e-05) / 4.035829765375676e-05)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSchedule(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.AlphasCumprod) != 1000 {
				t.Fatalf("len %d", len(s.AlphasCumprod))
			}
			near(t, "ac[0]", s.AlphasCumprod[0], tc.ac0, 1e-12)
			near(t, "ac[999]", s.AlphasCumprod[999], tc.ac999, 1e-12)
			near(t, "sigma[0]", s.Sigmas[0], tc.sigma0, 1e-12)
			near(t, "sigma[999]", s.Sigmas[999], tc.sigmaMx, 1e-12)
			for i := 1; i < 1000; i++ {
				if !(s.AlphasCumprod[i] < s.AlphasCumprod[i-1]) {
					t.Fatalf("alphas_cumprod not decreasing at %d", i)
				}
			}
		})
	}
}

func TestTimesteps(t *testing.T) {
	with := func(kind Kind, spacing string, offset int) Config {
		c := SD15(kind)
		c.TimestepSpacing, c.StepsOffset = spacing, offset
		return c
	}
	tests := []struct {
		name string
		kind Kind
		cfg  Config
		n    int
		want []float64
	}{
		// leading, DDIM/Euler: (n-1-i)·(1000÷50) + 1 = 981, 961, ..., 1.
		{"ddim leading 50", DDIM, SD15(DDIM), 50, []float64{
			981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661,
			641, 621, 601, 581, 561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321,
			301, 281, 261, 241, 221, 201, 181, 161, 141, 121, 101, 81, 61, 41, 21, 1}},
		// (19-i)·50 + 1.
		{"ddim leading 20", DDIM, SD15(DDIM), 20, []float64{
			951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1}},
		{"euler leading 20", Euler, SD15(Euler), 20, []float64{
			951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1}},
		{"ddim leading 1", DDIM, SD15(DDIM), 1, []float64{1}},
		// leading, DPM-Solver: (20-i)·(1000÷21) + 1 = (20-i)·47 + 1.
		{"dpm leading 20", DPMPP2M, SD15(DPMPP2M), 20, []float64{
			941, 894, 847, 800, 753, 706, 659, 612, 565, 518, 471, 424, 377, 330, 283, 236, 189, 142, 95, 48}},
		// 1·(1000÷2) + 1.
		{"dpm leading 1", DPMPP2M, SD15(DPMPP2M), 1, []float64{501}},
		// trailing: round(1000 - i·50) - 1.
		{"ddim trailing 20", DDIM, with(DDIM, Trailing, 1), 20, []float64{
			999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 499, 449, 399, 349, 299, 249, 199, 149, 99, 49}},
		{"dpm trailing 20", DPMPP2M, with(DPMPP2M, Trailing, 0), 20, []float64{
			999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 499, 449, 399, 349, 299, 249, 199, 149, 99, 49}},
		// round(1000 - i·33.33...) - 1.
		{"euler trailing 30", Euler, with(Euler, Trailing, 0), 30, []float64{
			999, 966, 932, 899, 866, 832, 799, 766, 732, 699, 666, 632, 599, 566, 532, 499, 466,
			432, 399, 366, 332, 299, 266, 232, 199, 166, 132, 99, 66, 32}},
		// linspace, DDIM: round(i·999/19), reversed.
		{"ddim linspace 20", DDIM, with(DDIM, Linspace, 1), 20, []float64{
			999, 946, 894, 841, 789, 736, 684, 631, 578, 526, 473, 421, 368, 315, 263, 210, 158, 105, 53, 0}},
		// linspace(0, 999, 7) = 0, 166.5, 333, 499.5, 666, 832.5, 999: ties
		// round to even (166, 500, 832), as numpy does.
		{"ddim linspace 7 ties", DDIM, with(DDIM, Linspace, 0), 7, []float64{999, 832, 666, 500, 333, 166, 0}},
		// linspace, DPM-Solver: round(linspace(0, 999, 21))[1:] reversed, i·49.95.
		{"dpm linspace 20", DPMPP2M, with(DPMPP2M, Linspace, 0), 20, []float64{
			999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50}},
		// linspace, Euler: float32(i·999/19), reversed, not rounded.
		{"euler linspace 20", Euler, with(Euler, Linspace, 0), 20, []float64{
			999.0, 946.4210815429688, 893.8421020507812, 841.26318359375, 788.6842041015625,
			736.1052856445312, 683.5263061523438, 630.9473876953125, 578.368408203125,
			525.7894897460938, 473.2105407714844, 420.631591796875, 368.0526428222656,
			315.47369384765625, 262.8947448730469, 210.3157958984375, 157.73684692382812,
			105.15789794921875, 52.578948974609375, 0.0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.kind, tc.cfg, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Timesteps(); !slices.Equal(got, tc.want) {
				t.Errorf("timesteps\n got %v\nwant %v", got, tc.want)
			}
			if s.Len() != tc.n {
				t.Errorf("Len %d, want %d", s.Len(), tc.n)
			}
		})
	}
}

// Trailing spacing must give exactly n timesteps for every n, including
// those (61, 103, ...) where numpy.arange's length rounding adds a bogus -1.
func TestTrailingAlwaysNSteps(t *testing.T) {
	for _, kind := range Kinds {
		c := SD15(kind)
		c.TimestepSpacing = Trailing
		for _, n := range []int{1, 2, 3, 7, 61, 103, 121, 499, 999, 1000} {
			s, err := New(kind, c, n)
			if err != nil {
				t.Fatalf("%s n=%d: %v", kind, n, err)
			}
			ts := s.Timesteps()
			if len(ts) != n || ts[0] != 999 || ts[n-1] < 0 {
				t.Fatalf("%s n=%d: %d timesteps, first %g last %g", kind, n, len(ts), ts[0], ts[n-1])
			}
		}
	}
}

func TestEulerSigmas(t *testing.T) {
	tests := []struct {
		name    string
		spacing string
		want    []float64 // σ at each timestep, then the final 0
		init    float64
	}{
		// σ(t) at t = 951, 901, ..., 1; init = sqrt(σ(951)² + 1) for leading.
		{Leading, Leading, []float64{
			11.02833116477522, 8.390684770218579, 6.5063978375308205, 5.134431117517536,
			4.116696479276065, 3.3477635806615926, 2.7561958540300786, 2.292853821788702,
			1.9234433148710193, 1.623692081515863, 1.3761789107458724, 1.1682159550479787,
			0.9904088768268802, 0.8356528080331495, 0.6983980911630334, 0.5740502594628525,
			0.458332700961321, 0.34618670638077037, 0.2281467364477799, 0.04131441199678309, 0}, 11.073576128782985},
		// σ interpolated linearly at the float32 linspace timesteps; init =
		// max σ = σ(999) for linspace.
		{Linspace, Linspace, []float64{
			14.614641229333639, 10.746845738770224, 8.081533897808761, 6.204949219105014,
			4.8556631218640645, 3.8653826744962325, 3.123767394280139, 2.557167057186659,
			2.1156607105669196, 1.7648243366503742, 1.4805820235025535, 1.245814773841833,
			1.0481423725133654, 0.8784294554759694, 0.7297191715030918, 0.596434637870457,
			0.4735857782250184, 0.35554636367440895, 0.23216763474129531, 0.029167158151720367, 0}, 14.614641229333639},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := SD15(Euler)
			c.TimestepSpacing = tc.spacing
			s, err := New(Euler, c, 20)
			if err != nil {
				t.Fatal(err)
			}
			e := s.(*euler)
			if len(e.sigmas) != len(tc.want) {
				t.Fatalf("%d sigmas, want %d", len(e.sigmas), len(tc.want))
			}
			for i, w := range tc.want {
				near(t, "sigma", e.sigmas[i], w, 1e-12)
				if i < 20 {
					near(t, "input scale", s.InputScale(i), 1/math.Sqrt(w*w+1), 1e-12)
				}
			}
			near(t, "init_noise_sigma", s.InitNoiseSigma(), tc.init, 1e-12)
		})
	}
}

func TestDPMSigmas(t *testing.T) {
	// σ(t) at the DPM leading timesteps 941, 894, ..., 48, then 0 (final_sigmas_type zero).
	want := []float64{
		10.42504083510693, 8.088177095475588, 6.380309272558555, 5.111027658207933,
		4.152057270768118, 3.415701792747446, 2.8411612168973335, 2.385715626789718,
		2.0189612725898476, 1.7189888260533845, 1.4698144123943782, 1.2596288475627684,
		1.0795866016337357, 0.9229521419500425, 0.7844795540943172, 0.6599326444652642,
		0.5456566288174624, 0.43806173266482945, 0.3326229765276001, 0.22040974855427967, 0}
	s, err := New(DPMPP2M, SD15(DPMPP2M), 20)
	if err != nil {
		t.Fatal(err)
	}
	d := s.(*dpm)
	for i, w := range want {
		near(t, "sigma", d.sigmas[i], w, 1e-12)
	}
	if s.InitNoiseSigma() != 1 || s.InputScale(3) != 1 {
		t.Errorf("DPM-Solver works in VP scale: init %g, input scale %g", s.InitNoiseSigma(), s.InputScale(3))
	}
}

func TestLambdaMinClipped(t *testing.T) {
	// λ_t = -log σ_t. Clipping at λ = -2 drops the timesteps with σ_t > e²,
	// so the schedule starts below that noise level.
	c := SD15(DPMPP2M)
	c.TimestepSpacing = Trailing
	c.LambdaMinClipped = -2
	s, err := New(DPMPP2M, c, 10)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := NewSchedule(c)
	first := s.Timesteps()[0]
	if sc.Sigmas[int(first)] > math.Exp(2) || sc.Sigmas[int(first)+2] <= math.Exp(2) {
		t.Errorf("first timestep %g has σ %g; want the last one with σ <= e² = %g", first, sc.Sigmas[int(first)], math.Exp(2))
	}
}

func near(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.17g, want %.17g", what, got, want)
	}
}
