package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// TestBadWorkflows runs the corpus in testdata/bad (and a few generated inputs
// too big to keep as files) through load and validation: each must give an
// error that names what is wrong, and nothing may panic.
func TestBadWorkflows(t *testing.T) {
	r := newRig(t, "")
	want := map[string][]string{
		"invalid-json.json":              {"not valid JSON"},
		"empty.json":                     {"not valid JSON"},
		"top-level-array.json":           {"must be a JSON object", "an array"},
		"wrong-version.json":             {"version 2 is not supported"},
		"version-string.json":            {`"version" must be the number 1`},
		"no-version.json":                {`no "version"`},
		"cycle.json":                     {"cycle", "a", "b"},
		"self-loop.json":                 {"cycle"},
		"type-mismatch.json":             {"node a (Add)", "input a", "a STRING output cannot feed an INT input"},
		"unknown-node.json":              {`unknown node type "Addd"`, `did you mean "Add"`},
		"missing-input.json":             {"node a (Add)", `required input "a"`},
		"wrong-literal-type.json":        {"input a", `"seven"`, "want integer"},
		"huge-number.json":               {"input value", "1e400"},
		"above-maximum.json":             {"input value", "must be at most 1000000"},
		"float-for-int.json":             {"input value", "want integer"},
		"enum-violation.json":            {"input space", `"c"`},
		"missing-output.json":            {`has no output "FLOAT"`, "INT"},
		"output-index-out-of-range.json": {"output 3", "has 1 outputs"},
		"dangling-link.json":             {`node "ghost"`, "not in the workflow"},
		"duplicate-id.json":              {`"a" is used twice`},
		"unknown-input.json":             {`no input "valu"`, `did you mean "value"`},
		"bad-id.json":                    {"/nodes/0/id"},
		"literal-for-tensor.json":        {"input latent", "must be linked"},
		"no-nodes.json":                  {"no nodes"},
		"unknown-top-level-key.json":     {"extra"},
		"comfy-unknown-nodes.json":       {`unknown node type "KSampler"`},
		"comfy-ui-format.json":           {"Save (API Format)"},
		"link-without-output.json":       {"/nodes/0/inputs/a"},
		"embedding-space-mismatch.json":  {"space-a", "space-b"},
		"nodes-not-list.json":            {"/nodes"},
	}
	files, err := filepath.Glob("testdata/bad/*.json")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus has %d files (%v), want at least 20", len(files), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			expect, ok := want[name]
			if !ok {
				t.Fatalf("corpus file %s has no expectation in the table", name)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkBad(t, r, data, expect)
		})
	}

	generated := []struct {
		name   string
		data   func() []byte
		expect []string
	}{
		{"10MB string literal", func() []byte {
			return []byte(`{"version":1,"nodes":[{"id":"c","type":"Concat","inputs":{"a":"` + strings.Repeat("x", 10<<20) + `"}}]}`)
		}, []string{"input a", "maxLength"}},
		{"deep nesting", func() []byte {
			return []byte(`{"version":1,"nodes":[{"id":"c","type":"Concat","inputs":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}]}`)
		}, []string{"JSON"}},
		{"file over the size limit", func() []byte {
			return []byte(`{"version":1,"nodes":[],"description":"` + strings.Repeat("y", workflow.MaxSize) + `"}`)
		}, []string{"larger than"}},
		{"nested literal too deep for schema", func() []byte {
			return []byte(`{"version":1,"nodes":[{"id":"c","type":"Concat","inputs":{"a":` + strings.Repeat(`{"k":`, 500) + "1" + strings.Repeat("}", 500) + `}}]}`)
		}, []string{"input a"}},
		{"ten thousand and one nodes", func() []byte {
			var b strings.Builder
			b.WriteString(`{"version":1,"nodes":[`)
			for i := 0; i <= 10000; i++ {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(`{"id":"n` + strings.Repeat("0", 0) + itoa(i) + `","type":"Const","inputs":{"value":1}}`)
			}
			b.WriteString("]}")
			return []byte(b.String())
		}, []string{"/nodes", "maxItems"}},
	}
	for _, g := range generated {
		t.Run(g.name, func(t *testing.T) { checkBad(t, r, g.data(), g.expect) })
	}
}

func checkBad(t *testing.T, r *rig, data []byte, expect []string) {
	t.Helper()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("panic: %v", p)
			}
		}()
		w, _, perr := workflow.Parse(data)
		if perr != nil {
			err = perr
			return
		}
		_, err = r.catalog.Compile(w, nil)
	}()
	if err == nil {
		t.Fatal("accepted a bad workflow")
	}
	msg := err.Error()
	for _, e := range expect {
		if !strings.Contains(msg, e) {
			t.Errorf("error %q\ndoes not mention %q", truncate(msg, 600), e)
		}
	}
	var ve *engine.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			if p.Kind == "" || p.Message == "" {
				t.Errorf("problem without kind or message: %+v", p)
			}
		}
		if len(ve.NodeErrors()) == 0 && ve.Problems[0].Node != "" {
			t.Error("NodeErrors is empty for a node problem")
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// TestValidationReportsEveryProblem: one pass finds them all, with machine form.
func TestValidationReportsEveryProblem(t *testing.T) {
	r := newRig(t, "")
	w := parse(t, `{"version":1,"nodes":[
		{"id":"a","type":"Nope"},
		{"id":"b","type":"Add","inputs":{"a":"x"}},
		{"id":"c","type":"Const","inputs":{}}]}`)
	_, err := r.catalog.Compile(w, nil)
	var ve *engine.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("got %v, want 3 problems", err)
	}
	ne := ve.NodeErrors()
	for _, id := range []string{"a", "b", "c"} {
		entry, ok := ne[id].(map[string]any)
		if !ok {
			t.Fatalf("node_errors lacks %s: %v", id, ne)
		}
		errs := entry["errors"].([]any)
		if len(errs) != 1 {
			t.Fatalf("node %s: %v", id, errs)
		}
	}
	b := ne["b"].(map[string]any)["errors"].([]any)[0].(map[string]any)
	if b["extra_info"].(map[string]any)["input_name"] != "a" || b["type"] != engine.KindInvalidLiteral {
		t.Fatalf("node b error: %v", b)
	}
}
