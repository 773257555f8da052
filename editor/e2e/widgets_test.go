package e2e

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/editor"
)

// fakeObjectInfo has the widget kinds the image pack lacks: a seed, a
// multi-line prompt, a weight slider, a boolean, an enum, and parametrised
// embedding types.
const fakeObjectInfo = `{
 "EncodeText": {"name": "EncodeText", "display_name": "Encode Text", "category": "face0", "description": "",
  "input": {"required": {"text": ["STRING", {"default": "a photo of a person", "multiline": true}]}, "optional": {}},
  "input_order": {"required": ["text"], "optional": []},
  "output": ["CONDITIONING"], "output_name": ["CONDITIONING"], "output_node": false,
  "face0_schema": {"type": "object", "properties": {"text": {"type": "string", "default": "a photo of a person", "x-face0-multiline": true}}}},
 "EmbedFace": {"name": "EmbedFace", "display_name": "Embed Face", "category": "face", "description": "",
  "input": {"required": {"model": [["faceapi", "facenet"], {"default": "faceapi"}]}, "optional": {}},
  "output": ["FACE_EMBEDDING"], "output_name": ["EMBEDDING"], "output_node": false,
  "face0_types": {"inputs": {"model": "ENUM"}, "outputs": {"EMBEDDING": "FACE_EMBEDDING:faceapi-128"}},
  "face0_schema": {"type": "object", "properties": {"model": {"type": "string", "enum": ["faceapi", "facenet"], "default": "faceapi"}}}},
 "RandomEmbedding": {"name": "RandomEmbedding", "display_name": "Random Embedding", "category": "face0", "description": "",
  "input": {"required": {}, "optional": {}},
  "output": ["FACE_EMBEDDING"], "output_name": ["EMBEDDING"], "output_node": false},
 "Face0Sampler": {"name": "Face0Sampler", "display_name": "Face0 Sampler", "category": "face0", "description": "Samples an image.",
  "input": {"required": {
     "positive": ["CONDITIONING"],
     "face": ["FACE_EMBEDDING"],
     "seed": ["INT", {"default": 0, "min": 0, "max": 4294967295, "control_after_generate": true}],
     "steps": ["INT", {"default": 20, "min": 1, "max": 200, "step": 1}],
     "face_weight": ["FLOAT", {"default": 1.0, "min": 0, "max": 2, "step": 0.05, "display": "slider"}],
     "cfg": ["FLOAT", {"default": 7.5, "min": 0, "max": 30, "step": 0.5}],
     "tiled": ["BOOLEAN", {"default": false}]},
   "optional": {}},
  "output": ["IMAGE"], "output_name": ["IMAGE"], "output_node": false,
  "face0_types": {"inputs": {"positive": "CONDITIONING", "face": "FACE_EMBEDDING:facenet-512", "seed": "INT", "steps": "INT", "face_weight": "FLOAT", "cfg": "FLOAT", "tiled": "BOOLEAN"}, "outputs": {"IMAGE": "IMAGE"}},
  "face0_schema": {"type": "object", "properties": {
     "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "default": 0, "x-face0-randomize": true},
     "steps": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
     "face_weight": {"type": "number", "minimum": 0, "maximum": 2, "default": 1, "x-face0-widget": "slider", "x-face0-step": 0.05},
     "cfg": {"type": "number", "minimum": 0, "maximum": 30, "default": 7.5, "x-face0-step": 0.5},
     "tiled": {"type": "boolean", "default": false}}}},
 "LoadPortrait": {"name": "LoadPortrait", "display_name": "Load Portrait", "category": "image", "description": "",
  "input": {"required": {"image": ["STRING", {"default": "", "image_upload": true}]}, "optional": {}},
  "output": ["IMAGE"], "output_name": ["IMAGE"], "output_node": false,
  "face0_schema": {"type": "object", "properties": {"image": {"type": "string", "default": "", "x-face0-widget": "image"}}}},
 "PreviewImage": {"name": "PreviewImage", "display_name": "PreviewImage", "category": "image", "description": "",
  "input": {"required": {"images": ["IMAGE"]}, "optional": {}},
  "output": [], "output_name": [], "output_node": true}
}`

const fakeWorkflow = `{"version": 1, "name": "Widgets", "nodes": [
 {"id": "text", "type": "EncodeText", "inputs": {"text": "a portrait, studio light"}, "ui": {"position": {"x": 0, "y": 0}}},
 {"id": "face", "type": "RandomEmbedding", "inputs": {}, "ui": {"position": {"x": 0, "y": 220}}},
 {"id": "embed", "type": "EmbedFace", "inputs": {"model": "facenet"}, "ui": {"position": {"x": 0, "y": 340}}},
 {"id": "sampler", "type": "Face0Sampler", "inputs": {"positive": {"node": "text", "output": "CONDITIONING"}, "face": {"node": "face", "output": "EMBEDDING"}, "seed": 1234, "steps": 20, "face_weight": 0.8, "cfg": 7.5, "tiled": false}, "ui": {"position": {"x": 340, "y": 0}, "randomize": {"seed": true}}},
 {"id": "preview", "type": "PreviewImage", "inputs": {"images": {"node": "sampler", "output": "IMAGE"}}, "ui": {"position": {"x": 680, "y": 0}}}
]}`

// TestEditorWidgets checks the widgets and type rules against a fake API with
// node kinds the real packs may not have yet; it needs no face0 binary.
func TestEditorWidgets(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	var mu sync.Mutex
	var prompts []map[string]any
	var views []string // the filenames of GET /view, in order
	files := http.FileServerFS(editor.FS())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /object_info", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, fakeObjectInfo) })
	mux.HandleFunc("GET /face0/types", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name": "IMAGE", "color": "#64b5f6"}, {"name": "FACE_EMBEDDING", "color": "#f06292"}, {"name": "CONDITIONING", "color": "#ffa931"}]`)
	})
	mux.HandleFunc("GET /face0/workflow/default", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, fakeWorkflow) })
	mux.HandleFunc("POST /prompt", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		prompts = append(prompts, body)
		mu.Unlock()
		io.WriteString(w, `{"prompt_id": "fake-1", "number": 1, "node_errors": {}}`)
	})
	mux.HandleFunc("GET /view", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		views = append(views, r.URL.Query().Get("filename"))
		mu.Unlock()
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if _, err := fs.Stat(editor.FS(), strings.TrimPrefix(r.URL.Path, "/")); err != nil && r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	shots := artifacts(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := startBrowser(t, chromium, 1280, 800)
	p := b.newPage(ctx)
	p.navigate(srv.URL + "/")
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 5`, 20*time.Second, "the fake default workflow")

	node := func(id string) string { return `document.querySelector('.react-flow__node[data-id="` + id + `"]')` }
	node2css := func(id string) string { return `.react-flow__node[data-id="` + id + `"]` }
	checks := map[string]string{
		"a multi-line prompt":           node("text") + `.querySelector('textarea[name="text"]').value === "a portrait, studio light"`,
		"a seed with a dice button":     node("sampler") + `.querySelector('.f0-seed input[name="seed"]').value === "1234"`,
		"randomize after run":           node("sampler") + `.querySelector('select[name="seed.control"]').value === "randomize"`,
		"a slider for face_weight":      node("sampler") + `.querySelector('input[type=range][name="face_weight"]').value === "0.8"`,
		"a plain number for cfg":        node("sampler") + `.querySelector('input[type=number][name="cfg"]').step === "0.5"`,
		"a checkbox for tiled":          node("sampler") + `.querySelector('input[type=checkbox][name="tiled"]').checked === false`,
		"a dropdown for the model":      node("embed") + `.querySelector('select[name="model"]').value === "facenet"`,
		"a coloured FACE_EMBEDDING pin": node("face") + `.querySelector('.react-flow__handle-right').style.background === "rgb(240, 98, 146)"`,
	}
	for what, expr := range checks {
		var ok bool
		if err := p.eval("!!("+expr+")", &ok); err != nil || !ok {
			t.Errorf("expected %s (%s): %v", what, expr, err)
		}
	}
	p.screenshot(filepath.Join(shots, "10-widgets.png"))

	// Parametrised types: an embedding of one space cannot feed a sampler of
	// another; one whose space is unknown (RandomEmbedding) can.
	var why string
	p.mustEval(`face0.connect("embed", "EMBEDDING", "sampler", "face")`, &why)
	if !strings.Contains(why, "different spaces") {
		t.Errorf("FACE_EMBEDDING:faceapi-128 -> FACE_EMBEDDING:facenet-512: got %q, want a refusal naming the spaces", why)
	}
	p.mustEval(`face0.connect("face", "EMBEDDING", "sampler", "face")`, &why)
	if why != "" {
		t.Errorf("FACE_EMBEDDING -> FACE_EMBEDDING:facenet-512 refused: %s", why)
	}
	p.mustEval(`face0.connect("sampler", "IMAGE", "text", "text")`, &why)
	if why == "" {
		t.Errorf("an IMAGE -> STRING link (and a cycle) was accepted")
	}

	// A 16-digit seed fits its box (typed, before it is committed and
	// clamped to this node's maximum).
	p.typeInto(node2css("sampler")+` input[name="seed"]`, "9007199254740991")
	var fits struct {
		Value          string
		Scroll, Client float64
	}
	p.mustEval(`(() => { const i = `+node("sampler")+`.querySelector('input[name="seed"]'); return {value: i.value, scroll: i.scrollWidth, client: i.clientWidth}; })()`, &fits)
	if fits.Value != "9007199254740991" || fits.Scroll > fits.Client {
		t.Errorf("the seed box shows %q in %.0f px and needs %.0f", fits.Value, fits.Client, fits.Scroll)
	}
	p.screenshotElement(node2css("sampler"), filepath.Join(shots, "11-seed.png"), 2)
	p.typeInto(node2css("sampler")+` input[name="seed"]`, "1234")
	p.key("Enter", 0)
	p.waitFor(node("sampler")+`.querySelector('input[name="seed"]').value === "1234"`, waitShort, "the seed back to 1234")

	// Queue: the prompt carries the seed shown, then the seed changes.
	p.click("#queue")
	p.waitFor(node("sampler")+`.querySelector('input[name="seed"]').value !== "1234"`, waitShort, "the seed to be randomised after queueing")
	func() {
		mu.Lock()
		defer mu.Unlock() // once: a Fatal below must not unlock twice
		if len(prompts) != 1 {
			t.Fatalf("%d prompts posted, want 1", len(prompts))
		}
		wf, _ := prompts[0]["prompt"].(map[string]any)
		if prompts[0]["client_id"] == "" || wf["version"] != float64(1) {
			t.Fatalf("posted %v, want a native workflow and a client id", prompts[0])
		}
		for _, n := range wf["nodes"].([]any) {
			n := n.(map[string]any)
			if n["id"] == "sampler" {
				if seed := n["inputs"].(map[string]any)["seed"]; seed != float64(1234) {
					t.Errorf("queued seed %v, want 1234", seed)
				}
			}
		}
	}()

	// The palette hides, and stays hidden after a reload.
	p.click("#toggle-palette")
	p.waitFor(`!document.querySelector('.f0-palette')`, waitShort, "the palette to hide")
	p.navigate(srv.URL + "/")
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 5 && !document.querySelector('.f0-palette')`, 20*time.Second, "a reload without the palette")
	p.click("#toggle-palette")
	p.waitFor(`document.querySelector('.f0-palette')`, waitShort, "the palette back")

	// Clear and Default ask before they throw away a graph that is not saved.
	p.waitFor(`face0.settled()`, 20*time.Second, "the graph to settle")
	p.click("#clear")
	p.waitFor(`document.querySelector('.f0-dialog')`, waitShort, "Clear to ask about the unsaved graph (its seed changed)")
	p.screenshot(filepath.Join(shots, "12-confirm-clear.png"))
	p.click("#confirm-cancel")
	p.waitFor(`!document.querySelector('.f0-dialog') && document.querySelectorAll(".react-flow__node").length === 5`, waitShort, "Cancel to keep the graph")
	p.click("#save")
	p.click("#clear")
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 0 && !document.querySelector('.f0-dialog')`, waitShort, "Clear of a saved graph, without a question")
	p.mustEval(`face0.addNode("PreviewImage"), true`, nil)
	p.click("#default")
	p.waitFor(`document.querySelector('.f0-dialog')`, waitShort, "Default to ask about the unsaved graph")
	p.click("#confirm-yes")
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 5`, waitShort, "Default to replace the graph once agreed")
	// The loaded graph is fitted into view once measured; a click before
	// that may find the view moved under it.
	p.waitFor(`face0.settled()`, waitShort, "the default graph to be fitted and saved")

	// An image name typed into a node without a list of choices fetches its
	// preview once typing pauses, not once per letter. The page's timers of
	// a tenth of a second to a second are held while typing, so that a slow
	// machine cannot make a pause between two letters.
	p.mustEval(`face0.addNode("LoadPortrait", 60, 560), true`, nil)
	p.waitFor(node("loadportrait_1")+`.querySelector('input[name="image"]')`, waitShort, "the LoadPortrait node")
	// It lies below the fitted graph, out of view, until the view fits it in.
	p.mustEval(`face0.fit(), true`, nil)
	p.waitFor(`face0.settled()`, waitShort, "the view to fit the new node in")
	p.mustEval(`(() => { const set = window.setTimeout, clear = window.clearTimeout; window.__held = new Map();
		window.setTimeout = (f, ms, ...a) => { if (ms >= 100 && ms <= 1000) { const id = set(() => {}, 1e9); window.__held.set(id, () => f(...a)); return id; } return set(f, ms, ...a); };
		window.clearTimeout = (id) => { window.__held.delete(id); clear(id); };
		window.__release = () => { window.setTimeout = set; window.clearTimeout = clear; const fs = [...window.__held.values()]; window.__held.clear(); fs.forEach((f) => f()); return fs.length; };
		return true; })()`, nil)
	// Clicked like a user would. (When this test clicked as soon as the box
	// existed, the click landed on the canvas one run in three: React Flow
	// keeps a new node hidden until it has measured it, and the loaded
	// graph's fit moved the view under it.)
	imageInput := node("loadportrait_1") + `.querySelector('input[name="image"]')`
	p.click(node2css("loadportrait_1") + ` input[name="image"]`)
	var focused bool
	p.mustEval(`document.activeElement === `+imageInput, &focused)
	if !focused {
		t.Fatal("a click on the shown image name box of a new node did not focus it")
	}
	const typed = "portrait.png"
	for _, r := range typed {
		p.do("Input.insertText", map[string]any{"text": string(r)})
	}
	p.waitFor(imageInput+`.value === "portrait.png"`, waitShort, "the typed name")
	// React's effects of the last letter (which set its timer) have run
	// once a frame and a task have passed.
	p.mustEval(`new Promise(r => requestAnimationFrame(() => setTimeout(() => r(true), 0)))`, nil)
	p.mustEval(`window.__release()`, nil)
	p.waitFor(`(() => { const i = `+node("loadportrait_1")+`.querySelector('img.f0-thumb'); return !i || i.complete; })() && !!`+node("loadportrait_1")+`.querySelector('.f0-hint')`,
		10*time.Second, "the preview of the typed name to be tried (and found missing)")
	p.screenshotElement(node2css("loadportrait_1"), filepath.Join(shots, "13-typed-image-name.png"), 2)
	mu.Lock()
	var early []string
	final := 0
	for _, v := range views {
		if v == typed {
			final++
		} else if strings.HasPrefix(typed, v) {
			early = append(early, v)
		}
	}
	if len(early) > 0 || final != 1 {
		t.Errorf("typing %q fetched previews of %q and %d of the whole name; want none while typing and one at the end", typed, early, final)
	}
}
