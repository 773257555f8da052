package sched

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// Kind names a sampler.
type Kind string

// The samplers.
const (
	// DDIM is diffusers' DDIMScheduler (Song et al. 2021).
	DDIM Kind = "ddim"
	// Euler is diffusers' EulerDiscreteScheduler (Karras et al. 2022, Alg. 2
	// without churn).
	Euler Kind = "euler"
	// DPMPP2M is diffusers' DPMSolverMultistepScheduler with
	// algorithm_type dpmsolver++ and solver_order 2 (Lu et al. 2022),
	// "DPM++ 2M" in A1111/ComfyUI.
	DPMPP2M Kind = "dpmpp_2m"
)

// Kinds lists the samplers, for node specs and help text.
var Kinds = []Kind{DDIM, Euler, DPMPP2M}

// ParseKind accepts a Kind name or a diffusers class name.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "ddim", "ddimscheduler":
		return DDIM, nil
	case "euler", "eulerdiscretescheduler":
		return Euler, nil
	case "dpmpp_2m", "dpm++2m", "dpm++ 2m", "dpmsolvermultistepscheduler":
		return DPMPP2M, nil
	}
	return "", fmt.Errorf("sched: unknown sampler %q (want one of ddim, euler, dpmpp_2m)", s)
}

// Prediction types: what the model outputs.
const (
	// Epsilon: the model predicts the noise ε (SD 1.x, SD 2 base).
	Epsilon = "epsilon"
	// VPrediction: the model predicts v = α_t ε - σ_t x_0 (Salimans & Ho
	// 2022; SD 2 768-v).
	VPrediction = "v_prediction"
)

// Config holds the fields of a diffusers scheduler_config.json that change
// the result, plus DDIM's eta (a pipeline argument in diffusers, not part of
// its config). The zero Config is not valid: start from Defaults or SD15.
type Config struct {
	NumTrainTimesteps int       // num_train_timesteps
	BetaStart         float64   // beta_start
	BetaEnd           float64   // beta_end
	BetaSchedule      string    // beta_schedule: linear or scaled_linear
	TrainedBetas      []float64 // trained_betas: overrides the three above when set
	PredictionType    string    // prediction_type: epsilon or v_prediction
	TimestepSpacing   string    // timestep_spacing: leading, trailing or linspace
	StepsOffset       int       // steps_offset

	// DDIM.
	Eta             float64 // stochasticity η: 0 is the deterministic DDIM, 1 is DDPM-like
	SetAlphaToOne   bool    // set_alpha_to_one: final ᾱ_prev = 1 instead of ᾱ_0
	ClipSample      bool    // clip_sample: clamp predicted x_0 to ±ClipSampleRange
	ClipSampleRange float64 // clip_sample_range

	// Euler and DPM-Solver.
	FinalSigmasType string // final_sigmas_type: zero (end at σ=0) or sigma_min (end at σ_0)

	// DPM-Solver.
	SolverOrder      int     // solver_order: 1 or 2
	SolverType       string  // solver_type: midpoint or heun
	LowerOrderFinal  bool    // lower_order_final: first-order last step when steps < 15
	EulerAtFinal     bool    // euler_at_final: first-order last step always
	LambdaMinClipped float64 // lambda_min_clipped: -Inf (no clipping) for SD
}

// Defaults returns diffusers' constructor defaults for kind's class, which
// is what a missing field in scheduler_config.json means.
func Defaults(kind Kind) Config {
	c := Config{
		NumTrainTimesteps: 1000,
		BetaStart:         0.0001,
		BetaEnd:           0.02,
		BetaSchedule:      "linear",
		PredictionType:    Epsilon,
		TimestepSpacing:   Linspace,
		ClipSampleRange:   1,
		FinalSigmasType:   "zero",
		SolverOrder:       2,
		SolverType:        "midpoint",
		LowerOrderFinal:   true,
		LambdaMinClipped:  math.Inf(-1),
	}
	if kind == DDIM {
		c.TimestepSpacing = Leading
		c.SetAlphaToOne = true
		c.ClipSample = true
	}
	return c
}

// SD15 is the Stable Diffusion 1.x schedule (what its
// scheduler/scheduler_config.json says, read through a pipeline): scaled
// linear betas from 0.00085 to 0.012 over 1000 steps, leading spacing with
// steps_offset 1, no clipping, final ᾱ_prev = ᾱ_0, ε-prediction.
func SD15(kind Kind) Config {
	c := Defaults(kind)
	c.BetaStart, c.BetaEnd, c.BetaSchedule = 0.00085, 0.012, "scaled_linear"
	c.TimestepSpacing = Leading
	c.StepsOffset = 1
	c.SetAlphaToOne = false
	c.ClipSample = false
	return c
}

// spacingDefault is each diffusers class's default timestep_spacing. A
// pipeline loads scheduler_config.json into the class it names, which
// records that class's defaults; swapping samplers with
// Target.from_config(pipe.scheduler.config) then carries them over. So SD
// 1.x's PNDMScheduler config, which has no timestep_spacing, gives every
// sampler "leading".
var spacingDefault = map[string]string{
	"PNDMScheduler":                   Leading,
	"DDIMScheduler":                   Leading,
	"DDPMScheduler":                   Leading,
	"LCMScheduler":                    Leading,
	"EulerDiscreteScheduler":          Linspace,
	"EulerAncestralDiscreteScheduler": Linspace,
	"DPMSolverMultistepScheduler":     Linspace,
	"DPMSolverSinglestepScheduler":    Linspace,
	"LMSDiscreteScheduler":            Linspace,
	"HeunDiscreteScheduler":           Linspace,
	"KDPM2DiscreteScheduler":          Linspace,
	"UniPCMultistepScheduler":         Linspace,
}

// LoadConfig reads a diffusers scheduler_config.json for kind; see
// ParseConfig.
func LoadConfig(path string, kind Kind) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sched: %w", err)
	}
	c, err := ParseConfig(data, kind)
	if err != nil {
		return Config{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

// ParseConfig reads a diffusers scheduler_config.json for sampler kind (""
// takes the kind from _class_name). Fields it does not mention take the
// defaults of the class it names (as a diffusers pipeline does when it swaps
// in another sampler with from_config), else those of kind's class. Fields
// of other samplers (PNDM's skip_prk_steps, ...) are ignored, as in
// diffusers. A value this package does not implement is an error naming the
// field.
func ParseConfig(data []byte, kind Kind) (Config, error) {
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(sanitizeJSON(data), &raw); err != nil {
		return Config{}, fmt.Errorf("sched: scheduler config: %w", err)
	}
	r := reader{raw: raw}
	var class string
	r.str("_class_name", &class)
	if kind == "" {
		k, err := ParseKind(class)
		if err != nil {
			return Config{}, fmt.Errorf("sched: _class_name %q has no Go implementation; choose one of ddim, euler, dpmpp_2m", class)
		}
		kind = k
	}
	if _, err := ParseKind(string(kind)); err != nil {
		return Config{}, err
	}
	c := Defaults(kind)
	if sp, ok := spacingDefault[class]; ok {
		c.TimestepSpacing = sp
	}
	if class == "PNDMScheduler" {
		c.SetAlphaToOne = false // PNDM's own default, carried into DDIM
	}

	r.int("num_train_timesteps", &c.NumTrainTimesteps)
	r.float("beta_start", &c.BetaStart)
	r.float("beta_end", &c.BetaEnd)
	r.str("beta_schedule", &c.BetaSchedule)
	r.floats("trained_betas", &c.TrainedBetas)
	r.str("prediction_type", &c.PredictionType)
	r.str("timestep_spacing", &c.TimestepSpacing)
	r.int("steps_offset", &c.StepsOffset)
	r.mustBe("rescale_betas_zero_snr", false)
	r.mustBe("thresholding", false)
	switch kind {
	case DDIM:
		r.bool("set_alpha_to_one", &c.SetAlphaToOne)
		r.bool("clip_sample", &c.ClipSample)
		r.float("clip_sample_range", &c.ClipSampleRange)
	case Euler:
		r.oneOf("interpolation_type", "linear")
		r.oneOf("timestep_type", "discrete")
		r.mustBe("use_karras_sigmas", false)
		r.mustBe("use_exponential_sigmas", false)
		r.mustBe("use_beta_sigmas", false)
		r.str("final_sigmas_type", &c.FinalSigmasType)
	case DPMPP2M:
		r.int("solver_order", &c.SolverOrder)
		// diffusers maps the deprecated "deis" to dpmsolver++.
		r.oneOf("algorithm_type", "dpmsolver++", "deis")
		var st string
		if r.str("solver_type", &st) {
			switch st {
			case "logrho", "bh1", "bh2": // diffusers maps these to midpoint
				st = "midpoint"
			}
			c.SolverType = st
		}
		r.bool("lower_order_final", &c.LowerOrderFinal)
		r.bool("euler_at_final", &c.EulerAtFinal)
		r.mustBe("use_karras_sigmas", false)
		r.mustBe("use_lu_lambdas", false)
		r.mustBe("use_exponential_sigmas", false)
		r.mustBe("use_beta_sigmas", false)
		r.mustBe("variance_type", nil)
		r.str("final_sigmas_type", &c.FinalSigmasType)
		r.float("lambda_min_clipped", &c.LambdaMinClipped)
	}
	if r.err != nil {
		return Config{}, r.err
	}
	if err := c.Validate(kind); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports the first field of c that kind cannot run with, naming
// it as scheduler_config.json does.
func (c Config) Validate(kind Kind) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("sched: %s %v is not supported for %s (want %s)", field, v, kind, want)
	}
	switch {
	case c.NumTrainTimesteps < 2:
		return bad("num_train_timesteps", c.NumTrainTimesteps, "at least 2")
	case c.TrainedBetas == nil && c.BetaSchedule != "linear" && c.BetaSchedule != "scaled_linear":
		return bad("beta_schedule", fmt.Sprintf("%q", c.BetaSchedule), "linear or scaled_linear")
	case c.TrainedBetas == nil && !(c.BetaStart > 0 && c.BetaStart <= c.BetaEnd && c.BetaEnd < 1):
		return fmt.Errorf("sched: beta_start %g, beta_end %g: want 0 < beta_start <= beta_end < 1", c.BetaStart, c.BetaEnd)
	case c.PredictionType != Epsilon && c.PredictionType != VPrediction:
		return bad("prediction_type", fmt.Sprintf("%q", c.PredictionType), "epsilon or v_prediction")
	case c.TimestepSpacing != Leading && c.TimestepSpacing != Trailing && c.TimestepSpacing != Linspace:
		return bad("timestep_spacing", fmt.Sprintf("%q", c.TimestepSpacing), "leading, trailing or linspace")
	case c.StepsOffset < 0:
		return bad("steps_offset", c.StepsOffset, "a non-negative integer")
	}
	switch kind {
	case DDIM:
		if !(c.Eta >= 0) {
			return bad("eta", c.Eta, "a non-negative number")
		}
		if c.ClipSample && !(c.ClipSampleRange > 0) {
			return bad("clip_sample_range", c.ClipSampleRange, "a positive number")
		}
	case Euler:
		if c.FinalSigmasType != "zero" && c.FinalSigmasType != "sigma_min" {
			return bad("final_sigmas_type", fmt.Sprintf("%q", c.FinalSigmasType), "zero or sigma_min")
		}
	case DPMPP2M:
		if c.FinalSigmasType != "zero" && c.FinalSigmasType != "sigma_min" {
			return bad("final_sigmas_type", fmt.Sprintf("%q", c.FinalSigmasType), "zero or sigma_min")
		}
		if c.SolverOrder != 1 && c.SolverOrder != 2 {
			return bad("solver_order", c.SolverOrder, "1 or 2")
		}
		if c.SolverType != "midpoint" && c.SolverType != "heun" {
			return bad("solver_type", fmt.Sprintf("%q", c.SolverType), "midpoint or heun")
		}
		if math.IsNaN(c.LambdaMinClipped) {
			return bad("lambda_min_clipped", c.LambdaMinClipped, "a number or -Infinity")
		}
	default:
		return fmt.Errorf("sched: unknown sampler %q (want one of ddim, euler, dpmpp_2m)", kind)
	}
	return nil
}

// reader decodes the fields of a raw config, keeping the first error. Each
// error names the field, because a config is usually written by hand or by
// another tool and the field is what the user has to fix.
type reader struct {
	raw map[string]json.RawMessage
	err error
}

// get decodes field into v and reports whether it was present and not null.
func (r *reader) get(field string, v any) bool {
	m, ok := r.raw[field]
	if !ok || r.err != nil || string(bytes.TrimSpace(m)) == "null" {
		return false
	}
	if err := json.Unmarshal(m, v); err != nil {
		r.err = fmt.Errorf("sched: scheduler config field %s: %s is not a %T", field, m, v)
		return false
	}
	return true
}

func (r *reader) str(field string, dst *string) bool { return r.get(field, dst) }
func (r *reader) bool(field string, dst *bool) bool  { return r.get(field, dst) }
func (r *reader) int(field string, dst *int) bool    { return r.get(field, dst) }

func (r *reader) floats(field string, dst *[]float64) bool { return r.get(field, dst) }

// float also accepts the strings sanitizeJSON makes of Python's -Infinity,
// Infinity and NaN.
func (r *reader) float(field string, dst *float64) bool {
	m, ok := r.raw[field]
	if !ok || r.err != nil {
		return false
	}
	var s string
	if json.Unmarshal(m, &s) == nil {
		switch s {
		case "-Infinity":
			*dst = math.Inf(-1)
		case "Infinity":
			*dst = math.Inf(1)
		case "NaN":
			*dst = math.NaN()
		default:
			r.err = fmt.Errorf("sched: scheduler config field %s: %s is not a number", field, m)
			return false
		}
		return true
	}
	return r.get(field, dst)
}

// mustBe errors unless field is absent or equal to want (false or nil).
func (r *reader) mustBe(field string, want any) {
	m, ok := r.raw[field]
	if !ok || r.err != nil {
		return
	}
	var v any
	if err := json.Unmarshal(m, &v); err != nil || v != want {
		r.err = fmt.Errorf("sched: scheduler config field %s: %s is not supported (want %v)", field, m, jsonText(want))
	}
}

// oneOf errors unless field is absent, null or one of the allowed strings.
func (r *reader) oneOf(field string, allowed ...string) {
	var s string
	if !r.get(field, &s) {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	r.err = fmt.Errorf("sched: scheduler config field %s: %q is not supported (want %s)", field, s, strings.Join(allowed, " or "))
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// sanitizeJSON turns the bare tokens NaN, Infinity and -Infinity, which
// Python's json module writes (diffusers saves lambda_min_clipped as
// -Infinity) but JSON forbids, into strings, leaving string contents alone.
func sanitizeJSON(data []byte) []byte {
	if !bytes.Contains(data, []byte("Infinity")) && !bytes.Contains(data, []byte("NaN")) {
		return data
	}
	out := make([]byte, 0, len(data)+16)
	inString, escaped := false, false
	for i := 0; i < len(data); i++ {
		ch := data[i]
		if inString {
			out = append(out, ch)
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		if ch == '"' {
			inString = true
			out = append(out, ch)
			continue
		}
		replaced := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(data[i:], []byte(tok)) {
				out = append(out, '"')
				out = append(out, tok...)
				out = append(out, '"')
				i += len(tok) - 1
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, ch)
		}
	}
	return out
}
