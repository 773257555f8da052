package workflow

import (
	"strings"
	"testing"
)

// Errors say what is wrong in the words a user knows: a link's output index,
// a file's text encoding, a ComfyUI editor file.
func TestParseWording(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"negative output index", `{"version":1,"nodes":[{"id":"a","type":"Const"},{"id":"b","type":"Add","inputs":{"a":{"node":"a","output":-1}}}]}`,
			[]string{"/nodes/1/inputs/a", `link to node "a"`, "output index -1", "0 for the first output"}},
		{"fractional output index", `{"version":1,"nodes":[{"id":"a","type":"Const"},{"id":"b","type":"Add","inputs":{"a":{"node":"a","output":1.5}}}]}`,
			[]string{"/nodes/1/inputs/a", "output index 1.5"}},
		{"missing output", `{"version":1,"nodes":[{"id":"a","type":"Const"},{"id":"b","type":"Add","inputs":{"a":{"node":"a"}}}]}`,
			[]string{"/nodes/1/inputs/a", `link to node "a" has no "output"`}},
		{"API prompt, negative index", `{"1":{"class_type":"Add","inputs":{"a":["2",-1]}},"2":{"class_type":"Const","inputs":{}}}`,
			[]string{"node 1", "input a", `link to node "2"`, "output index -1"}},
		{"API prompt, index missing", `{"1":{"class_type":"Add","inputs":{"a":["2"]}},"2":{"class_type":"Const","inputs":{}}}`,
			[]string{"node 1", "input a", `link to node "2"`, "no output index"}},
		{"UTF-16 with a byte-order mark", "\xff\xfe{\x00\"\x00v\x00", []string{"UTF-16", "save it as UTF-8"}},
		{"UTF-16 without one", "{\x00\"\x00v\x00e\x00", []string{"UTF-16", "save it as UTF-8"}},
		{"ComfyUI editor file, schema 1", `{"version":1,"state":{"lastNodeId":1},"nodes":[{"id":1,"type":"Const","pos":[0,0],"widgets_values":[1]}],"links":[]}`,
			[]string{"ComfyUI editor workflow", "face0 editor", "API"}},
	} {
		_, _, err := Parse([]byte(tc.src))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "'not' failed") || strings.Contains(err.Error(), "invalid character") {
			t.Errorf("%s: %q speaks the validator's language", tc.name, err)
		}
	}
	// A UTF-8 byte-order mark is only a mark: the file reads.
	if _, _, err := Parse([]byte("\xef\xbb\xbf{\"version\":1,\"nodes\":[]}")); err != nil {
		t.Errorf("a UTF-8 file with a byte-order mark: %v", err)
	}
}
