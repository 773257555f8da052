package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The fixtures in testdata are ComfyUI editor workflows written by hand for
// these tests; they must follow ComfyUI's published schema (version 0.4 with
// links as arrays, version 1 with links as objects and reroutes).
func TestComfyFixturesFollowTheSchema(t *testing.T) {
	c := jsonschema.NewCompiler()
	sch, err := c.Compile("testdata/comfyui-workflow.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"comfyui-0.4.json", "comfyui-1.json"} {
		b := mustRead(t, filepath.Join("testdata", f))
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s does not follow ComfyUI's workflow schema: %v", f, err)
		}
	}
	// And the schema tells the versions apart: a 0.4 file is not a 1.
	var v any
	_ = json.Unmarshal([]byte(`{"version": 1, "nodes": [], "last_node_id": 0, "last_link_id": 0, "links": []}`), &v)
	if err := sch.Validate(v); err == nil {
		t.Error("the schema accepts version 1 without state")
	}
}

func link(node, output string) map[string]any { return map[string]any{"node": node, "output": output} }

type wantNode struct {
	typ    string
	title  string
	mode   string
	inputs map[string]any
	ui     map[string]any // keys that must be in the node's ui, with these values
}

// checkNodes compares the editor's workflow with what the ComfyUI file says,
// input by input.
func checkNodes(t *testing.T, label string, wf map[string]any, want map[string]wantNode) {
	t.Helper()
	got := map[string]map[string]any{}
	for _, n := range wf["nodes"].([]any) {
		n := n.(map[string]any)
		got[n["id"].(string)] = n
	}
	if len(got) != len(want) {
		ids := []string{}
		for id := range got {
			ids = append(ids, id)
		}
		t.Errorf("%s: %d nodes (%v), want %d", label, len(got), ids, len(want))
	}
	for id, w := range want {
		n, ok := got[id]
		if !ok {
			t.Errorf("%s: node %s (%s) is missing", label, id, w.typ)
			continue
		}
		if n["type"] != w.typ {
			t.Errorf("%s: node %s is a %v, want %s", label, id, n["type"], w.typ)
		}
		if s, _ := n["title"].(string); s != w.title {
			t.Errorf("%s: node %s title %q, want %q", label, id, s, w.title)
		}
		if s, _ := n["mode"].(string); s != w.mode {
			t.Errorf("%s: node %s mode %q, want %q", label, id, s, w.mode)
		}
		inputs, _ := n["inputs"].(map[string]any)
		for name, v := range w.inputs {
			if !reflect.DeepEqual(inputs[name], normalise(t, v)) {
				t.Errorf("%s: node %s (%s) input %s = %v, want %v", label, id, w.typ, name, inputs[name], v)
			}
		}
		for name := range inputs {
			if _, ok := w.inputs[name]; !ok {
				t.Errorf("%s: node %s (%s) has input %s = %v, which the file does not give", label, id, w.typ, name, inputs[name])
			}
		}
		ui, _ := n["ui"].(map[string]any)
		for k, v := range w.ui {
			if !reflect.DeepEqual(ui[k], normalise(t, v)) {
				t.Errorf("%s: node %s ui.%s = %v, want %v", label, id, k, ui[k], v)
			}
		}
	}
}

// TestEditorComfyWorkflows loads workflows saved by ComfyUI's editor (schema
// 0.4 and 1): widget values land on the right inputs, links, groups, notes
// and reroutes are kept, node types this server lacks are marked missing,
// and once those are removed the workflow runs with its muted node left out
// and its bypassed node passing its input through.
func TestEditorComfyWorkflows(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	const token = "comfy-token"
	root := moduleRoot(t)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "input"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "input", "smiley.png"), mustRead(t, filepath.Join(root, "examples", "inputs", "smiley.png")), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServerIn(t, token, home, false)
	shots := artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBrowser(t, chromium, 1600, 1000)
	p := b.newPage(ctx)
	p.navigate(editorURL(t, srv.base, token))
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6 && document.querySelector(".f0-conn.on")`, 20*time.Second, "the default workflow")

	common := func(blur, invert, save, muted, scale, load string) map[string]wantNode {
		return map[string]wantNode{
			load:   {typ: "LoadImage", inputs: map[string]any{"image": "smiley.png", "alpha": "keep"}},
			scale:  {typ: "ImageScale", inputs: map[string]any{"images": link(load, "IMAGE"), "width": 256, "height": 192, "method": "nearest"}},
			blur:   {typ: "BoxBlur", inputs: map[string]any{"image": link(scale, "IMAGE"), "radius": 5, "passes": 2}},
			invert: {typ: "Invert", mode: "bypassed", inputs: map[string]any{"image": link(blur, "IMAGE"), "strength": 0.5}},
			save: {typ: "SaveImage", title: "Save the blur", inputs: map[string]any{"images": link(invert, "IMAGE"), "filename_prefix": "comfy/blur"},
				ui: map[string]any{"color": "#232", "bgcolor": "#353"}},
			muted: {typ: "SaveImage", mode: "muted", inputs: map[string]any{"images": link(blur, "IMAGE"), "filename_prefix": "comfy/muted"}},
		}
	}
	cases := []struct {
		file      string
		want      map[string]wantNode
		reroutes  map[string]any // reroute id -> where it comes from
		via       [2]string      // node, reroute id its image link is drawn through
		note      string
		missing   string
		keeps     []any  // the missing node's widget values, kept to be saved again
		types     string // every missing type, as the load message lists them
		cantRun   []string
		blur, inv string
		edges     int
	}{
		{
			file: "comfyui-0.4.json",
			want: func() map[string]wantNode {
				w := common("4", "5", "6", "7", "2", "1")
				w["8"] = wantNode{typ: "RandomEmbedding", inputs: map[string]any{"model": "tiny", "seed": 12345}, ui: map[string]any{"control": map[string]any{"seed": "increment"}}}
				w["9"] = wantNode{typ: "Interpolate", inputs: map[string]any{"a": link("8", "embedding"), "b": link("8", "embedding"), "mode": "spherical", "t": 0.25,
					"weight_a": 1, "weight_b": 2, "weight_c": 3, "weight_d": 4, "noise": 0.1, "noise_seed": 7},
					ui: map[string]any{"control": map[string]any{"noise_seed": "fixed"}, "collapsed": true}}
				w["10"] = wantNode{typ: "KSampler", inputs: map[string]any{}}
				w["13"] = wantNode{typ: "Decode", inputs: map[string]any{"model": "tiny", "latent": link("10", "LATENT"), "device": "cpu"}}
				return w
			}(),
			reroutes: map[string]any{"reroute_3": map[string]any{"node": "2", "output": "IMAGE"}},
			via:      [2]string{"4", "reroute_3"},
			note:     "schema 0.4",
			missing:  "10",
			keeps:    []any{156680208700286, "randomize", 20, 8, "euler", "normal", 1},
			cantRun:  []string{"8", "9", "10", "13"},
			blur:     "4", inv: "5",
			// 1-2, 2-reroute, reroute-4, 4-5, 5-6, 4-7, 8-9 twice, 10-13
			edges: 9,
		},
		{
			file: "comfyui-1.json",
			want: func() map[string]wantNode {
				w := common("3", "4", "5", "6", "2", "1")
				w["7"] = wantNode{typ: "RandomEmbedding", inputs: map[string]any{"model": "tiny", "seed": 12345}, ui: map[string]any{"control": map[string]any{"seed": "increment"}}}
				w["8"] = wantNode{typ: "CheckpointLoaderSimple", inputs: map[string]any{}}
				w["10"] = wantNode{typ: "Subgraph: Face detail", inputs: map[string]any{},
					ui: map[string]any{"comfy": map[string]any{"type": "9f3c2a1e-4b7d-4e21-8c55-2d6f0a9b7e13", "inputs": []any{}, "outputs": []any{}, "widgets_values": []any{}}}}
				return w
			}(),
			reroutes: map[string]any{"rr_1": map[string]any{"node": "2", "output": "IMAGE"}, "rr_2": map[string]any{"node": "rr_1", "output": "out"}},
			via:      [2]string{"3", "rr_2"},
			note:     "schema 1",
			missing:  "8",
			keeps:    []any{"v1-5-pruned-emaonly.safetensors"},
			types:    "CheckpointLoaderSimple, Subgraph: Face detail",
			cantRun:  []string{"7", "8", "10"},
			blur:     "3", inv: "4",
			// 1-2, 2-rr_1, rr_1-rr_2, rr_2-3, 3-4, 4-5, 3-6
			edges: 7,
		},
	}
	for i, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			p.setFiles("#load-file", filepath.Join(root, "editor", "e2e", "testdata", tc.file))
			// The graph in the canvas has changes (the default was replaced
			// by a run of the previous file): the editor asks first.
			p.waitFor(`document.querySelector('.f0-dialog') || document.getElementById("message").textContent.startsWith("Loaded ")`, 10*time.Second, "the file to load or a question")
			var dialog bool
			p.mustEval(`!!document.querySelector('.f0-dialog')`, &dialog)
			if dialog {
				p.click("#confirm-yes")
			}
			p.waitFor(fmt.Sprintf(`document.getElementById("message").textContent.startsWith("Loaded %s (ComfyUI editor format)")`, tc.file), 10*time.Second, "the ComfyUI file to load")
			var msg string
			p.mustEval(`document.getElementById("message").textContent`, &msg)
			if tc.types == "" {
				tc.types = tc.want[tc.missing].typ
			}
			if !strings.Contains(msg, "missing node types: "+tc.types+";") && !strings.HasSuffix(msg, "missing node types: "+tc.types) {
				t.Errorf("load message %q does not list the missing node types %s", msg, tc.types)
			}
			var wf map[string]any
			p.mustEval(`face0.workflow()`, &wf)
			checkNodes(t, tc.file, wf, tc.want)
			ui, _ := wf["ui"].(map[string]any)
			rr := map[string]any{}
			for _, r := range ui["reroutes"].([]any) {
				r := r.(map[string]any)
				rr[r["id"].(string)] = r["from"]
			}
			if !reflect.DeepEqual(rr, normalise(t, tc.reroutes)) {
				t.Errorf("reroutes %v, want %v", rr, tc.reroutes)
			}
			for _, n := range wf["nodes"].([]any) {
				n := n.(map[string]any)
				if n["id"] == tc.via[0] {
					if via := n["ui"].(map[string]any)["via"]; !reflect.DeepEqual(via, map[string]any{"image": tc.via[1]}) {
						t.Errorf("node %s's link is drawn through %v, want %s", tc.via[0], via, tc.via[1])
					}
				}
			}
			for _, n := range wf["nodes"].([]any) {
				n := n.(map[string]any)
				if n["id"] != tc.missing {
					continue
				}
				comfy, _ := n["ui"].(map[string]any)["comfy"].(map[string]any)
				if !reflect.DeepEqual(comfy["widgets_values"], normalise(t, tc.keeps)) {
					t.Errorf("the missing node %s keeps widget values %v, want the file's %v", tc.missing, comfy["widgets_values"], tc.keeps)
				}
			}
			// What shows on the canvas.
			checks := map[string]string{
				"the missing node marked":           fmt.Sprintf(`document.querySelector('.react-flow__node[data-id="%s"] .f0-node.unknown .f0-badge.bad').textContent === "missing: %s"`, tc.missing, tc.want[tc.missing].typ),
				"the note":                          fmt.Sprintf(`[...document.querySelectorAll('.react-flow__node-note textarea')].some(t => t.value.includes(%q))`, tc.note),
				"the group":                         `document.querySelector('.react-flow__node-group .f0-frame-title').textContent === "Input"`,
				"the reroute points":                fmt.Sprintf(`document.querySelectorAll('.react-flow__node-reroute').length === %d`, len(tc.reroutes)),
				"the links":                         fmt.Sprintf(`document.querySelectorAll('.react-flow__edge').length === %d`, tc.edges),
				"the bypassed node":                 fmt.Sprintf(`document.querySelector('.react-flow__node[data-id="%s"] .f0-node.bypassed')`, tc.inv),
				"the seed's control after generate": `document.querySelector('select[name="seed.control"]').value === "increment"`,
			}
			// The links are drawn a frame after their nodes are measured:
			// each check is given a while to become true.
			for what, expr := range checks {
				var ok bool
				var err error
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if err = p.eval("!!("+expr+")", &ok); err == nil && ok {
						break
					}
				}
				if err != nil || !ok {
					t.Errorf("expected %s (%s): %v", what, expr, err)
				}
			}
			p.screenshot(filepath.Join(shots, fmt.Sprintf("3%d-comfyui-%s.png", i, strings.TrimSuffix(strings.TrimPrefix(tc.file, "comfyui-"), ".json"))))

			// Queued as it is, the missing type is refused on its node.
			p.click("#queue")
			p.waitFor(fmt.Sprintf(`document.querySelector('.react-flow__node[data-id="%s"] .f0-error')`, tc.missing), 10*time.Second, "the missing node's error")
			// Without the nodes that cannot run here, it runs: the muted
			// SaveImage saves nothing, the bypassed Invert does not run.
			ids, _ := json.Marshal(tc.cantRun)
			p.mustEval(fmt.Sprintf(`face0.select(%s), true`, ids), nil)
			p.click(".react-flow__pane")
			p.mustEval(fmt.Sprintf(`face0.select(%s), true`, ids), nil)
			p.key("Delete", 0)
			p.waitFor(fmt.Sprintf(`!document.querySelector('.react-flow__node[data-id="%s"]')`, tc.missing), 10*time.Second, "the nodes to be removed")
			p.mustEval(`window.face0Messages.length = 0, true`, nil)
			p.click("#queue")
			p.waitFor(`document.getElementById("message").textContent === "Done"`, 60*time.Second, "the run to finish")
			var msgs []struct {
				Type string
				Node any
			}
			p.mustEval(`window.face0Messages`, &msgs)
			ran := map[string]bool{}
			for _, m := range msgs {
				switch n := m.Node.(type) {
				case string:
					ran[n] = m.Type == "executing" || ran[n]
				case []any: // execution_cached lists its nodes
					for _, x := range n {
						ran[fmt.Sprint(x)] = true
					}
				}
			}
			if ran[tc.inv] {
				t.Errorf("the bypassed Invert (node %s) ran", tc.inv)
			}
			if !ran[tc.blur] {
				t.Errorf("BoxBlur (node %s) did not run: %v", tc.blur, ran)
			}
			if got, _ := filepath.Glob(filepath.Join(home, "output", "comfy", "blur_*.png")); len(got) == 0 {
				t.Errorf("nothing saved as comfy/blur")
			}
			if got, _ := filepath.Glob(filepath.Join(home, "output", "comfy", "muted_*.png")); len(got) != 0 {
				t.Errorf("the muted SaveImage saved %v", got)
			}
		})
	}

	// An image saved by ComfyUI carries the API prompt and, after it, the
	// editor workflow as PNG text chunks: dropped on the canvas, the editor
	// workflow loads, with its values.
	t.Run("ComfyUI PNG", func(t *testing.T) {
		const name = "ComfyUI_00001_.png"
		prompt := `{"1": {"class_type": "LoadImage", "inputs": {"image": "smiley.png"}}}`
		png := comfyPNG(t, map[string]string{"prompt": prompt, "workflow": string(mustRead(t, filepath.Join("testdata", "comfyui-0.4.json")))})
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		p.dropFile(".react-flow__pane", path, "image/png")
		p.waitFor(`document.querySelector('.f0-dialog') || document.getElementById("message").textContent.startsWith("Loaded ")`, 10*time.Second, "the PNG to load or a question")
		var dialog bool
		p.mustEval(`!!document.querySelector('.f0-dialog')`, &dialog)
		if dialog {
			p.click("#confirm-yes")
		}
		p.waitFor(fmt.Sprintf(`document.getElementById("message").textContent.startsWith("Loaded %s (ComfyUI editor format)")`, name), 10*time.Second, "the PNG's ComfyUI workflow to load")
		var wf map[string]any
		p.mustEval(`face0.workflow()`, &wf)
		checkNodes(t, name, wf, cases[0].want)
	})

	// Text encodings Windows editors save in: a UTF-8 byte-order mark is
	// skipped; UTF-16, with or without one, is refused saying so.
	t.Run("encodings", func(t *testing.T) {
		src := mustRead(t, filepath.Join("testdata", "comfyui-1.json"))
		utf16 := func(bom bool) []byte {
			var b []byte
			if bom {
				b = append(b, 0xff, 0xfe)
			}
			for _, r := range string(src) {
				b = binary.LittleEndian.AppendUint16(b, uint16(r))
			}
			return b
		}
		dir := t.TempDir()
		files := map[string][]byte{
			"bom.json":          append([]byte("\xef\xbb\xbf"), src...),
			"utf16-bom.json":    utf16(true),
			"utf16-no-bom.json": utf16(false),
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"utf16-bom.json", "utf16-no-bom.json"} {
			p.setFiles("#load-file", filepath.Join(dir, name))
			want := fmt.Sprintf("Cannot load %s: it is UTF-16 text; save it as UTF-8", name)
			var msg string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && msg != want; time.Sleep(50 * time.Millisecond) {
				p.mustEval(`document.getElementById("message").textContent`, &msg)
			}
			if msg != want {
				t.Errorf("loading %s says %q, want %q", name, msg, want)
			}
		}
		p.setFiles("#load-file", filepath.Join(dir, "bom.json"))
		p.waitFor(`document.querySelector('.f0-dialog') || document.getElementById("message").textContent.startsWith("Loaded bom.json")`, 10*time.Second, "the BOM file to load or a question")
		var dialog bool
		p.mustEval(`!!document.querySelector('.f0-dialog')`, &dialog)
		if dialog {
			p.click("#confirm-yes")
		}
		p.waitFor(`document.getElementById("message").textContent.startsWith("Loaded bom.json (ComfyUI editor format)")`, 10*time.Second, "the file with a UTF-8 byte-order mark to load")
		var wf map[string]any
		p.mustEval(`face0.workflow()`, &wf)
		checkNodes(t, "bom.json", wf, cases[1].want)
	})
}

// comfyPNG is a 1x1 PNG with the given tEXt chunks before its image data,
// "prompt" first and "workflow" after it, as ComfyUI writes them.
func comfyPNG(t *testing.T, text map[string]string) []byte {
	t.Helper()
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := img.Bytes()
	// The signature (8 bytes) and IHDR (4+4+13+4) come first.
	const head = 8 + 25
	var out bytes.Buffer
	out.Write(b[:head])
	for _, k := range []string{"prompt", "workflow"} {
		v, ok := text[k]
		if !ok {
			continue
		}
		data := append([]byte(k+"\x00"), v...)
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		out.Write(n[:])
		chunk := append([]byte("tEXt"), data...)
		out.Write(chunk)
		binary.BigEndian.PutUint32(n[:], crc32.ChecksumIEEE(chunk))
		out.Write(n[:])
	}
	out.Write(b[head:])
	return out.Bytes()
}
