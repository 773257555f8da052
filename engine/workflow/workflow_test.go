package workflow

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"strings"
	"testing"
)

const native = `{
  "version": 1,
  "name": "demo",
  "nodes": [
    {"id": "a", "type": "Const", "inputs": {"value": 12345678901234567890}, "ui": {"x": 1, "y": 2}},
    {"id": "b", "type": "Add", "title": "sum", "inputs": {"a": {"node": "a", "output": "INT"}, "b": {"node": "a", "output": 0}, "c": [1, "x"], "d": {"k": "v"}}}
  ],
  "ui": {"zoom": 1.5}
}`

func TestParseNativeRoundTrip(t *testing.T) {
	w, f, err := Parse([]byte(native))
	if err != nil || f != Native {
		t.Fatalf("Parse: %v %v", f, err)
	}
	b := w.Node("b")
	if b == nil || b.Inputs["a"].Link == nil || b.Inputs["a"].Link.Output != "INT" {
		t.Fatalf("link by name not read: %+v", b)
	}
	if l := b.Inputs["b"].Link; l == nil || l.Output != "" || l.Index != 0 {
		t.Fatalf("link by index not read: %+v", l)
	}
	if b.Inputs["d"].Link != nil || b.Inputs["c"].Link != nil {
		t.Fatal("literals taken for links")
	}
	// Big integers keep every digit.
	if n := w.Node("a").Inputs["value"].Value.(json.Number); n.String() != "12345678901234567890" {
		t.Fatalf("number changed: %s", n)
	}
	out, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w2, _, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	out2, _ := w2.Marshal()
	if !bytes.Equal(out, out2) {
		t.Fatalf("marshal is not stable:\n%s\n%s", out, out2)
	}
	if !strings.Contains(string(out), `"zoom": 1.5`) || !strings.Contains(string(out), `"x": 1`) {
		t.Fatal("editor state lost")
	}
}

func TestParseComfyPrompt(t *testing.T) {
	src := `{"10": {"class_type": "Add", "inputs": {"a": ["9", 0], "b": 2}, "_meta": {"title": "adder"}},
	         "9": {"class_type": "Const", "inputs": {"value": 5}}}`
	w, f, err := Parse([]byte(src))
	if err != nil || f != ComfyUI {
		t.Fatalf("Parse: %v %v", f, err)
	}
	if w.Nodes[0].ID != "9" || w.Nodes[1].ID != "10" {
		t.Fatalf("ids not in numeric order: %v, %v", w.Nodes[0].ID, w.Nodes[1].ID)
	}
	l := w.Node("10").Inputs["a"].Link
	if l == nil || l.Node != "9" || l.Index != 0 || w.Node("10").Title != "adder" {
		t.Fatalf("converted badly: %+v", w.Node("10"))
	}
	back, err := w.ToComfyPrompt(func(string, string) (int, bool) { return 0, true })
	if err != nil {
		t.Fatal(err)
	}
	if back["10"].(map[string]any)["inputs"].(map[string]any)["a"].([]any)[0] != "9" {
		t.Fatalf("ToComfyPrompt: %v", back)
	}
}

func TestPNGEmbedRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	png.Encode(&buf, image.NewNRGBA(image.Rect(0, 0, 4, 3)))
	w, _, _ := Parse([]byte(native))
	w.Description = "ünïcode ✓"
	js, _ := w.Marshal()
	withText, err := EmbedPNG(buf.Bytes(), map[string]string{PNGKeyWorkflow: string(js), "note": "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(withText)); err != nil {
		t.Fatalf("image no longer decodes: %v", err)
	}
	text, err := PNGText(withText)
	if err != nil || text["note"] != "plain" {
		t.Fatalf("PNGText: %v %v", text, err)
	}
	got, _, err := FromPNG(withText)
	if err != nil || got.Description != "ünïcode ✓" {
		t.Fatalf("FromPNG: %v %+v", err, got)
	}
	if _, _, err := FromPNG(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "no workflow") {
		t.Fatalf("plain PNG: %v", err)
	}
	if _, err := EmbedPNG([]byte("GIF89a"), nil); err == nil {
		t.Fatal("EmbedPNG accepted a non-PNG")
	}
}

func TestCloneIsDeep(t *testing.T) {
	w, _, _ := Parse([]byte(native))
	c := w.Clone()
	c.Node("a").Inputs["value"] = Literal(json.Number("1"))
	if w.Node("a").Inputs["value"].Value.(json.Number).String() == "1" {
		t.Fatal("Clone shares inputs")
	}
}

// FuzzParse: whatever the bytes, Parse returns a workflow or an error; it never
// panics, and what it accepts survives a Marshal/Parse round trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{native, `{}`, `[]`, `{"version":1,"nodes":[]}`,
		`{"1":{"class_type":"X","inputs":{"a":["2",0]}}}`, `{"version":1,"nodes":[{"id":"a","type":"T","inputs":{"x":{"node":"b","output":-1}}}]}`,
		`{"last_node_id":1}`, "\x89PNG\r\n\x1a\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, _, err := Parse(data)
		if err != nil {
			return
		}
		out, err := w.Marshal()
		if err != nil {
			t.Fatalf("accepted workflow does not marshal: %v", err)
		}
		if _, _, err := Parse(out); err != nil {
			t.Fatalf("marshalled workflow does not parse: %v\n%s", err, out)
		}
	})
}
