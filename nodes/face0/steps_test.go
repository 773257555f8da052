package face0

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/face0/face0/ml/sched"
)

// stepsMax is the steps maximum Face0Sampler advertises (its schema, which
// the editor's widget and the validator use).
func stepsMax(t *testing.T) int {
	t.Helper()
	for _, n := range Pack("test").Nodes {
		spec := n.Spec()
		if spec.Type != "Face0Sampler" {
			continue
		}
		for _, in := range spec.Inputs {
			if in.Name == "steps" {
				var s struct{ Maximum *int }
				if err := json.Unmarshal([]byte(in.Schema), &s); err != nil || s.Maximum == nil {
					t.Fatalf("steps has no maximum: %s", in.Schema)
				}
				return *s.Maximum
			}
		}
	}
	t.Fatal("no Face0Sampler steps input")
	return 0
}

// Face0Sampler's step limit is what every scheduler accepts, under SD 1.x's
// scheduler config and the shipped model's: a workflow that validates never
// fails in the scheduler for its step count, and the limit is no lower than
// it must be (one step more fails with some scheduler).
func TestStepsLimitFitsEverySampler(t *testing.T) {
	max := stepsMax(t)
	over := false
	for _, kind := range []sched.Kind{sched.DDIM, sched.Euler, sched.DPMPP2M} {
		shipped, err := sched.LoadConfig(filepath.Join("..", "..", "models", "face0-synthfaces", "scheduler", "scheduler_config.json"), kind)
		if err != nil {
			t.Fatal(err)
		}
		configs := map[string]sched.Config{"SD 1.x": sched.SD15(kind), "the shipped model's": shipped}
		for name, c := range configs {
			if _, err := sched.New(kind, c, max); err != nil {
				t.Errorf("%s under %s config refuses the advertised %d steps: %v", kind, name, max, err)
			}
			if _, err := sched.New(kind, c, max+1); err != nil {
				over = true
			}
		}
	}
	if !over {
		t.Errorf("every scheduler accepts %d steps: the advertised limit %d is lower than it must be", max+1, max)
	}
}
