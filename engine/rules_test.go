package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
)

// samplerSpec is a node whose eta only the ddim scheduler takes, and whose
// model list names where models come from (the face0 pack's Face0Sampler
// declares both the same way).
func samplerSpec() engine.NodeDef {
	return engine.NodeDef{Pack: "p", Build: "b", Spec: &pb.NodeSpec{Type: "Sampler", Version: "1", Deterministic: true, Inputs: []*pb.PortSpec{
		{Name: "model", Type: "STRING", Schema: `{"type": "string", "enum": ["tiny"], "x-face0-hint": "models are the folders of /m; add one there"}`},
		{Name: "scheduler", Type: "STRING", Schema: `{"type": "string", "enum": ["ddim", "euler"], "default": "ddim"}`},
		{Name: "eta", Type: "FLOAT", Schema: `{"type": "number", "minimum": 0, "maximum": 1, "default": 0,
			"x-face0-rules": [{"when": {"required": ["scheduler"], "properties": {"scheduler": {"not": {"const": "ddim"}}}},
			                   "then": {"const": 0}, "message": "only the ddim scheduler takes eta; set eta to 0, or the scheduler to ddim"}]}`},
	}, Outputs: []*pb.PortSpec{{Name: "out", Type: "STRING"}}}}
}

func TestInputRulesAndHints(t *testing.T) {
	// Empty: a model list with nothing in it yet (no model folder).
	empty := samplerSpec()
	empty.Spec.Type = "Empty"
	empty.Spec.Inputs[0].Schema = `{"type": "string", "enum": [], "x-face0-hint": "add one"}`
	cat, errs := engine.NewCatalog([]engine.NodeDef{samplerSpec(), empty}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, c := range []struct {
		inputs string
		want   string // "" when valid
	}{
		{`"model": "tiny", "scheduler": "ddim", "eta": 1`, ""},
		{`"model": "tiny", "eta": 0.5`, ""}, // the default scheduler is ddim
		{`"model": "tiny", "scheduler": "euler"`, ""},
		{`"model": "tiny", "scheduler": "euler", "eta": 0`, ""},
		{`"model": "tiny", "scheduler": "euler", "eta": 1`, `node s (Sampler), input eta: eta is 1: only the ddim scheduler takes eta; set eta to 0, or the scheduler to ddim`},
		{`"model": "big"`, `value "big" is not valid: must be one of 'tiny'; models are the folders of /m; add one there`},
		{`"type": "Empty", "model": "big"`, `value "big" is not valid: there is nothing to choose from yet; add one`},
	} {
		typ := "Sampler"
		if strings.HasPrefix(c.inputs, `"type"`) {
			typ = "Empty"
			c.inputs = strings.TrimPrefix(c.inputs, `"type": "Empty", `)
		}
		w := parse(t, `{"version": 1, "nodes": [{"id": "s", "type": "`+typ+`", "inputs": {`+c.inputs+`}}]}`)
		_, err := cat.Compile(w, nil)
		var ve *engine.ValidationError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.inputs, err)
		case c.want != "" && (!errors.As(err, &ve) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v\nwant %q", c.inputs, err, c.want)
		case c.want != "" && ve.Problems[0].Kind != engine.KindInvalidLiteral:
			t.Errorf("%s: kind %s", c.inputs, ve.Problems[0].Kind)
		}
	}
}

// A rule that is not a rule is the node's spec error, not a panic later.
func TestBadInputRuleIsASpecError(t *testing.T) {
	d := samplerSpec()
	d.Spec.Inputs[2].Schema = `{"type": "number", "x-face0-rules": [{"when": {"type": 3}, "then": {}, "message": "m"}]}`
	_, errs := engine.NewCatalog([]engine.NodeDef{d}, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "x-face0-rules") {
		t.Fatalf("errors %v, want one naming x-face0-rules", errs)
	}
}
