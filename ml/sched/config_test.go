package sched

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Stable Diffusion 1.5's scheduler/scheduler_config.json, as published.
const sd15JSON = `{
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null,
  "clip_sample": false
}`

// A DPMSolverMultistepScheduler config as diffusers saves it: Python's json
// writes -Infinity, which is not JSON.
const dpmJSON = `{
  "_class_name": "DPMSolverMultistepScheduler",
  "_diffusers_version": "0.27.0",
  "algorithm_type": "dpmsolver++",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "dynamic_thresholding_ratio": 0.995,
  "euler_at_final": false,
  "final_sigmas_type": "zero",
  "lambda_min_clipped": -Infinity,
  "lower_order_final": true,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "sample_max_value": 1.0,
  "solver_order": 2,
  "solver_type": "midpoint",
  "steps_offset": 1,
  "thresholding": false,
  "timestep_spacing": "leading",
  "trained_betas": null,
  "use_karras_sigmas": false,
  "use_lu_lambdas": false,
  "variance_type": null,
  "note": "a string with -Infinity and NaN inside"
}`

func TestParseConfig(t *testing.T) {
	eulerLinspace := Defaults(Euler)
	eulerLinspace.BetaStart, eulerLinspace.BetaEnd, eulerLinspace.BetaSchedule = 0.00085, 0.012, "scaled_linear"
	tests := []struct {
		name string
		json string
		kind Kind
		want Config
	}{
		// SD 1.5's PNDM config gives every sampler leading spacing with
		// steps_offset 1, as a diffusers pipeline swapping samplers does.
		{"sd15 ddim", sd15JSON, DDIM, SD15(DDIM)},
		{"sd15 euler", sd15JSON, Euler, SD15(Euler)},
		{"sd15 dpm", sd15JSON, DPMPP2M, SD15(DPMPP2M)},
		{"dpm saved by diffusers", dpmJSON, "", SD15(DPMPP2M)},
		// Loaded directly into its own class, an Euler config without
		// timestep_spacing takes Euler's default, linspace.
		{"euler class default spacing", `{"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085,
			"beta_end": 0.012, "beta_schedule": "scaled_linear"}`, "", eulerLinspace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tc.json), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, json string
		kind       Kind
		field      string // the error must name it
	}{
		{"pndm without kind", sd15JSON, "", "_class_name"},
		{"cosine betas", `{"beta_schedule": "squaredcos_cap_v2"}`, DDIM, "beta_schedule"},
		{"karras", `{"use_karras_sigmas": true}`, Euler, "use_karras_sigmas"},
		{"karras dpm", `{"use_karras_sigmas": true}`, DPMPP2M, "use_karras_sigmas"},
		{"order 3", `{"solver_order": 3}`, DPMPP2M, "solver_order"},
		{"sde", `{"algorithm_type": "sde-dpmsolver++"}`, DPMPP2M, "algorithm_type"},
		{"spacing", `{"timestep_spacing": "karras"}`, DDIM, "timestep_spacing"},
		{"prediction", `{"prediction_type": "sample"}`, Euler, "prediction_type"},
		{"zero snr", `{"rescale_betas_zero_snr": true}`, DDIM, "rescale_betas_zero_snr"},
		{"thresholding", `{"thresholding": true}`, DPMPP2M, "thresholding"},
		{"wrong type", `{"steps_offset": "1"}`, DDIM, "steps_offset"},
		{"interpolation", `{"interpolation_type": "log_linear"}`, Euler, "interpolation_type"},
		{"final sigmas", `{"final_sigmas_type": "denoise_to_zero"}`, Euler, "final_sigmas_type"},
		{"variance", `{"variance_type": "learned"}`, DPMPP2M, "variance_type"},
		{"trained betas length", `{"trained_betas": [0.1, 0.2]}`, DDIM, "trained_betas"},
		{"not json", `{"steps_offset": 1,,}`, DDIM, "scheduler config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json), tc.kind)
			if err == nil {
				// Some problems only show when the schedule is built.
				_, err = New(tc.kind, c, 10)
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %v does not name %s", err, tc.field)
			}
		})
	}
}

func TestLoadConfigAndTrainedBetas(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scheduler_config.json")
	// trained_betas override beta_schedule: the SD betas written out give
	// the same schedule.
	sd, _ := NewSchedule(SD15(DDIM))
	var b strings.Builder
	b.WriteString(`{"_class_name": "DDIMScheduler", "steps_offset": 1, "set_alpha_to_one": false, "clip_sample": false, "beta_schedule": "nonsense", "trained_betas": [`)
	for i, v := range sd.Betas {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	b.WriteString("]}")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSchedule(c)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "ac[999]", s.AlphasCumprod[999], sd.AlphasCumprod[999], 1e-12)
	if _, err := LoadConfig(filepath.Join(dir, "missing.json"), DDIM); err == nil {
		t.Error("missing file: no error")
	}
}

func TestSanitizeJSON(t *testing.T) {
	in := `{"a": -Infinity, "b": [Infinity, NaN], "c": "x -Infinity \" NaN"}`
	want := `{"a": "-Infinity", "b": ["Infinity", "NaN"], "c": "x -Infinity \" NaN"}`
	if got := string(sanitizeJSON([]byte(in))); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	c, err := ParseConfig([]byte(`{"lambda_min_clipped": -5.1}`), DPMPP2M)
	if err != nil || c.LambdaMinClipped != -5.1 {
		t.Errorf("lambda_min_clipped %g, %v", c.LambdaMinClipped, err)
	}
	c, err = ParseConfig([]byte(`{"lambda_min_clipped": -Infinity}`), DPMPP2M)
	if err != nil || !math.IsInf(c.LambdaMinClipped, -1) {
		t.Errorf("lambda_min_clipped %g, %v", c.LambdaMinClipped, err)
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{
		"ddim": DDIM, "DDIMScheduler": DDIM, "euler": Euler, "EulerDiscreteScheduler": Euler,
		"dpmpp_2m": DPMPP2M, "DPM++ 2M": DPMPP2M, "DPMSolverMultistepScheduler": DPMPP2M,
	} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseKind("PNDMScheduler"); err == nil {
		t.Error("PNDM accepted")
	}
}
