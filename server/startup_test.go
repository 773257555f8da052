package server

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// get fetches a route and decodes its JSON answer into any value (lists too).
func get(t *testing.T, url string) (int, any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v any
	_ = json.Unmarshal(b, &v)
	return res.StatusCode, v
}

func send(t *testing.T, method, url, body string) (int, any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v any
	_ = json.Unmarshal(b, &v)
	return res.StatusCode, v
}

// The routes ComfyUI's frontend calls as it starts, plain and under /api,
// answer in ComfyUI's shapes (server.py, app/user_manager.py,
// app/app_settings.py, comfy_api/feature_flags.py; /i18n and
// /workflow_templates are custom nodes' translations and example workflows,
// objects keyed by locale and by node pack).
func TestStartupRoutes(t *testing.T) {
	ts := startServer(t, newHome(t))
	for _, prefix := range []string{"", "/api"} {
		u := ts.url + prefix
		shapes := []struct {
			path string
			want func(any) bool
			what string
		}{
			{"/embeddings", func(v any) bool { l, ok := v.([]any); return ok && len(l) == 0 }, "an empty list"},
			{"/extensions", func(v any) bool { l, ok := v.([]any); return ok && len(l) == 0 }, "an empty list"},
			{"/features", func(v any) bool {
				m, _ := v.(map[string]any)
				_, n := m["max_upload_size"].(float64)
				return m["supports_preview_metadata"] == true && n
			}, `{"supports_preview_metadata": true, "max_upload_size": bytes}`},
			{"/models", func(v any) bool { return reflect.DeepEqual(v, []any{"face0"}) }, `["face0"]`},
			{"/models/face0", func(v any) bool { _, ok := v.([]any); return ok }, "a list of model names"},
			{"/users", func(v any) bool {
				m, _ := v.(map[string]any)
				_, b := m["migrated"].(bool)
				return m["storage"] == "server" && b
			}, `{"storage": "server", "migrated": bool}`},
			{"/settings", func(v any) bool { _, ok := v.(map[string]any); return ok }, "an object"},
			{"/userdata?dir=workflows&recurse=true&split=false&full_info=true", func(v any) bool { l, ok := v.([]any); return ok && len(l) == 0 }, "an empty list"},
			{"/i18n", func(v any) bool { m, ok := v.(map[string]any); return ok && len(m) == 0 }, "an empty object"},
			{"/workflow_templates", func(v any) bool { m, ok := v.(map[string]any); return ok && len(m) == 0 }, "an empty object"},
		}
		for _, s := range shapes {
			code, v := get(t, u+s.path)
			if code != 200 || !s.want(v) {
				t.Errorf("GET %s%s: %d %v; want 200 and %s", prefix, s.path, code, v, s.what)
			}
		}
		if code, _ := get(t, u+"/models/checkpoints"); code != 404 {
			t.Errorf("GET %s/models/checkpoints: %d, want 404 as ComfyUI for a folder it does not know", prefix, code)
		}
	}

	// Settings: set together and one by one, read back; unset is null.
	if code, _ := send(t, "POST", ts.url+"/settings", `{"Comfy.LinkRenderMode": 2, "Comfy.Locale": "en"}`); code != 200 {
		t.Fatalf("POST /settings: %d", code)
	}
	if code, _ := send(t, "POST", ts.url+"/api/settings/Comfy.Locale", `"fr"`); code != 200 {
		t.Fatalf("POST /api/settings/Comfy.Locale: %d", code)
	}
	if _, v := get(t, ts.url+"/settings"); !reflect.DeepEqual(v, map[string]any{"Comfy.LinkRenderMode": 2.0, "Comfy.Locale": "fr"}) {
		t.Errorf("GET /settings after two writes: %v", v)
	}
	if code, v := get(t, ts.url+"/settings/Comfy.Unset"); code != 200 || v != nil {
		t.Errorf("GET an unset setting: %d %v, want null", code, v)
	}

	// User files (the frontend's saved workflows): write, read, list, move, delete.
	wf := `{"last_node_id": 0, "nodes": []}`
	if code, v := send(t, "POST", ts.url+"/userdata/workflows%2Fa.json", wf); code != 200 || v != "workflows/a.json" {
		t.Fatalf("POST /userdata/workflows%%2Fa.json: %d %v", code, v)
	}
	res, err := http.Get(ts.url + "/api/userdata/workflows%2Fa.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != wf || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET the file back: %d %q %v", res.StatusCode, b, res.Header)
	}
	if _, v := get(t, ts.url+"/userdata?dir=workflows"); !reflect.DeepEqual(v, []any{"a.json"}) {
		t.Errorf("list: %v", v)
	}
	if _, v := get(t, ts.url+"/userdata?dir=workflows&split=true"); !reflect.DeepEqual(v, []any{[]any{"a.json", "a.json"}}) {
		t.Errorf("split list: %v", v)
	}
	_, v := get(t, ts.url+"/userdata?dir=workflows&full_info=true")
	if l, _ := v.([]any); len(l) != 1 || l[0].(map[string]any)["path"] != "a.json" || l[0].(map[string]any)["size"] != float64(len(wf)) {
		t.Errorf("full_info list: %v", v)
	}
	if code, _ := send(t, "POST", ts.url+"/userdata/workflows%2Fa.json?overwrite=false", wf); code != 409 {
		t.Errorf("overwrite=false on an existing file: %d, want 409", code)
	}
	if code, v := send(t, "POST", ts.url+"/userdata/workflows%2Fa.json/move/workflows%2Fb.json", ""); code != 200 || v != "workflows/b.json" {
		t.Errorf("move: %d %v", code, v)
	}
	if code, _ := send(t, "DELETE", ts.url+"/userdata/workflows%2Fb.json", ""); code != 204 {
		t.Errorf("delete: %d, want 204", code)
	}
	if code, _ := get(t, ts.url+"/userdata/workflows%2Fb.json"); code != 404 {
		t.Errorf("GET a deleted file: %d, want 404", code)
	}
	for _, bad := range []string{"..%2F..%2Fserver.db", "%2Fetc%2Fpasswd"} {
		if code, _ := get(t, ts.url+"/userdata/"+bad); code != 403 {
			t.Errorf("GET /userdata/%s: %d, want 403", bad, code)
		}
	}
}

// A prompt without an output node is refused as ComfyUI refuses it (a face0
// workflow without any runs its sinks, as the engine does); a validation
// error lists the outputs that depend on the failing node.
func TestPromptNoOutputsAndDependentOutputs(t *testing.T) {
	ts := startServer(t, newHome(t))
	code, out := call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "smiley.png"}},
	}})
	e, _ := out["error"].(map[string]any)
	if ne, isList := out["node_errors"].([]any); code != 400 || e["type"] != "prompt_no_outputs" || e["message"] != "Prompt has no outputs" || !isList || len(ne) != 0 {
		t.Errorf("a prompt without outputs: %d %v; want 400 prompt_no_outputs with node_errors []", code, out)
	}
	// The same with its only output node muted.
	code, out = call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "l", "type": "LoadImage", "inputs": map[string]any{"image": "smiley.png"}},
		map[string]any{"id": "p", "type": "PreviewImage", "mode": "muted", "inputs": map[string]any{"images": map[string]any{"node": "l", "output": "IMAGE"}}},
	}}})
	if e, _ := out["error"].(map[string]any); code != 400 || e["type"] != "prompt_no_outputs" {
		t.Errorf("a prompt whose output is muted: %d %v", code, out)
	}

	// A face0 workflow without any output node runs what nothing reads
	// from, as face0 run does (its Sleep workflows have no output node).
	if code, out := call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "l", "type": "LoadImage", "inputs": map[string]any{"image": "smiley.png"}},
	}}}); code != 200 {
		t.Errorf("a face0 workflow without output nodes: %d %v; want it queued (its sinks run)", code, out)
	}

	code, out = call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "l", "type": "LoadImage", "inputs": map[string]any{"image": "smiley.png"}},
		map[string]any{"id": "scale", "type": "ImageScale", "inputs": map[string]any{"images": map[string]any{"node": "l", "output": "IMAGE"}, "width": 0}},
		map[string]any{"id": "s", "type": "SaveImage", "inputs": map[string]any{"images": map[string]any{"node": "scale", "output": "IMAGE"}}},
		map[string]any{"id": "p", "type": "PreviewImage", "inputs": map[string]any{"images": map[string]any{"node": "scale", "output": "IMAGE"}}},
		map[string]any{"id": "p2", "type": "PreviewImage", "inputs": map[string]any{"images": map[string]any{"node": "l", "output": "IMAGE"}}},
	}}})
	ne, _ := out["node_errors"].(map[string]any)
	scale, _ := ne["scale"].(map[string]any)
	if code != 400 || !reflect.DeepEqual(scale["dependent_outputs"], []any{"p", "s"}) {
		t.Errorf("ImageScale's error: %d, dependent_outputs %v; want [p s] (%v)", code, scale["dependent_outputs"], out)
	}
}
