package engine_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// Muted and bypassed nodes, run by real plugin processes: what runs, what
// values arrive, and what the errors say.
func TestModes(t *testing.T) {
	r := newRig(t, "")
	cases := []struct {
		name    string
		wf      string
		want    map[string]int64 // node -> its INT output
		ran     []string
		problem string // a validation error containing this, instead of a run
	}{
		{
			name: "a bypassed Add passes its first INT input on",
			wf: `{"version":1,"nodes":[
				{"id":"a","type":"Const","inputs":{"value":1}},
				{"id":"b","type":"Add","mode":"bypassed","inputs":{"a":{"node":"a","output":"INT"},"b":100}},
				{"id":"c","type":"Add","inputs":{"a":{"node":"b","output":"INT"},"b":1}}]}`,
			want: map[string]int64{"c": 2},
			ran:  []string{"a", "c"},
		},
		{
			name: "a chain of bypassed nodes, linked by output index",
			wf: `{"version":1,"nodes":[
				{"id":"a","type":"Const","inputs":{"value":5}},
				{"id":"b","type":"Add","mode":"bypassed","inputs":{"a":{"node":"a","output":0},"b":100}},
				{"id":"b2","type":"Add","mode":"bypassed","inputs":{"a":{"node":"b","output":0}}},
				{"id":"c","type":"Add","inputs":{"a":{"node":"b2","output":"INT"},"b":{"node":"b","output":"INT"}}}]}`,
			want: map[string]int64{"c": 10},
			ran:  []string{"a", "c"},
		},
		{
			name: "a muted node's link is dropped and the input takes its default",
			wf: `{"version":1,"nodes":[
				{"id":"a","type":"Const","inputs":{"value":3}},
				{"id":"m","type":"Const","mode":"muted","inputs":{"value":40}},
				{"id":"c","type":"Add","inputs":{"a":{"node":"a","output":"INT"},"b":{"node":"m","output":"INT"}}}]}`,
			want: map[string]int64{"c": 3},
			ran:  []string{"a", "c"},
		},
		{
			name: "a required input fed by a muted node is missing, and the error names the node",
			wf: `{"version":1,"nodes":[
				{"id":"m","type":"Const","mode":"muted","inputs":{"value":40}},
				{"id":"c","type":"Add","inputs":{"a":{"node":"m","output":"INT"}}}]}`,
			problem: `required input "a" (INT) is missing: its link came from node m, which is muted`,
		},
		{
			name: "a bypassed node whose matching input is not linked drops the link",
			wf: `{"version":1,"nodes":[
				{"id":"b","type":"Add","mode":"bypassed","inputs":{"a":2,"b":3}},
				{"id":"c","type":"Add","inputs":{"a":{"node":"b","output":"INT"}}}]}`,
			problem: `which is bypassed and has no link on its INT input "a"`,
		},
		{
			name: "a muted node's own errors do not count",
			wf: `{"version":1,"nodes":[
				{"id":"bad","type":"Add","mode":"muted","inputs":{"a":"not a number","zzz":1}},
				{"id":"c","type":"Add","inputs":{"a":1}}]}`,
			want: map[string]int64{"c": 1},
			ran:  []string{"c"},
		},
		{
			name: "a bypassed node of an unknown type is refused, a muted one is not",
			wf: `{"version":1,"nodes":[
				{"id":"gone","type":"NoSuchNode","mode":"muted"},
				{"id":"odd","type":"AlsoMissing","mode":"bypassed"},
				{"id":"c","type":"Add","inputs":{"a":{"node":"odd","output":0}}}]}`,
			problem: `unknown node type "AlsoMissing": a bypassed node passes an input on by its type`,
		},
		{
			name: "every node muted",
			wf: `{"version":1,"nodes":[
				{"id":"a","type":"Const","mode":"muted","inputs":{"value":1}}]}`,
			problem: "every node of the workflow is muted or bypassed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := parse(t, tc.wf)
			plan, err := r.catalog.Compile(w, nil)
			if tc.problem != "" {
				var ve *engine.ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("got %v, want a validation error containing %q", err, tc.problem)
				}
				if strings.Contains(err.Error(), "gone") {
					t.Errorf("the muted unknown node was reported: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.Workflow != w {
				t.Error("the plan does not keep the workflow as given (modes and all)")
			}
			_, rec, err := r.run(t, w)
			if err != nil {
				t.Fatal(err)
			}
			ran := executedNodes(rec)
			sort.Strings(ran)
			if !slices.Equal(ran, tc.ran) {
				t.Errorf("ran %v, want %v", ran, tc.ran)
			}
			res, _, _ := r.run(t, w)
			for node, v := range tc.want {
				if got := intOut(t, res, node, "INT"); got != v {
					t.Errorf("%s = %d, want %d", node, got, v)
				}
			}
		})
	}
}

// The native format accepts the two modes and nothing else.
func TestModeSchema(t *testing.T) {
	for _, m := range []string{"muted", "bypassed"} {
		parse(t, `{"version":1,"nodes":[{"id":"a","type":"Const","mode":"`+m+`"}]}`)
	}
	_, _, err := parseErr(`{"version":1,"nodes":[{"id":"a","type":"Const","mode":"never"}]}`)
	if err == nil || !strings.Contains(err.Error(), "/nodes/0/mode") {
		t.Fatalf("mode \"never\" accepted or not located: %v", err)
	}
}

func parseErr(src string) (any, any, error) {
	w, f, err := workflow.Parse([]byte(src))
	return w, f, err
}

// A cycle through many nodes names a few and counts the rest.
func TestCycleMessageIsShort(t *testing.T) {
	r := newRig(t, "")
	var b strings.Builder
	b.WriteString(`{"version":1,"nodes":[`)
	for i := range 12 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(fmt.Sprintf(`{"id":"n%d","type":"Add","inputs":{"a":{"node":"n%d","output":"INT"}}}`, i, (i+11)%12))
	}
	b.WriteString(`]}`)
	_, err := r.catalog.Compile(parse(t, b.String()), nil)
	if err == nil || !strings.Contains(err.Error(), "a cycle through nodes n0, n1, n2, n3, n4 and 7 more") {
		t.Fatalf("got %v, want the cycle named by five nodes and a count", err)
	}
}
