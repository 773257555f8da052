package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gorilla/websocket"
)

// comfyPrompt is examples/workflows/imagefx.json in ComfyUI's API format, the
// way a ComfyUI script would send it.
const comfyPrompt = `{
  "1": {"class_type": "LoadImage", "inputs": {"image": "smiley.png"}},
  "2": {"class_type": "ImageScale", "inputs": {"images": ["1", 0], "width": 96, "height": 72}},
  "3": {"class_type": "BoxBlur", "inputs": {"image": ["2", 0], "radius": 2, "passes": 2}},
  "4": {"class_type": "Invert", "inputs": {"image": ["2", 0], "strength": 1}},
  "5": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "t/blur"}},
  "6": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "t/invert"}}
}`

// TestComfyScriptedClient is ComfyUI's websocket API example, step by step:
// submit with a client_id, wait for "executing" null, read the history, fetch
// every image.
func TestComfyScriptedClient(t *testing.T) {
	ts := startServer(t, newHome(t))
	ws := dialWS(t, ts.url, "?clientId=script-1")
	hello := readUntil(t, ws, 5*time.Second, func(wsMsg) bool { return true })[0]
	if hello.Type != "status" || hello.Data["sid"] != "script-1" {
		t.Fatalf("first message = %+v, want status with sid", hello)
	}
	var prompt map[string]any
	if err := json.Unmarshal([]byte(comfyPrompt), &prompt); err != nil {
		t.Fatal(err)
	}
	id := submit(t, ts.url, map[string]any{"prompt": prompt, "client_id": "script-1"})
	msgs := readUntil(t, ws, 20*time.Second, finished(id))
	var types []string
	for _, m := range msgs {
		if m.Type != "status" && m.Type != "progress" {
			types = append(types, m.Type)
		}
	}
	for _, want := range []string{"execution_start", "execution_cached", "executing", "executed", "execution_success"} {
		if !slices.Contains(types, want) {
			t.Errorf("no %s message; got %v", want, types)
		}
	}
	if types[0] != "execution_start" || types[len(types)-2] != "execution_success" {
		t.Errorf("order: %v", types)
	}
	h := waitHistory(t, ts.url, id)
	status := h["status"].(map[string]any)
	if status["status_str"] != "success" || status["completed"] != true {
		t.Fatalf("status = %v", status)
	}
	item := h["prompt"].([]any)
	if item[1] != id || !reflect.DeepEqual(item[4], []any{"5", "6"}) {
		t.Errorf("history prompt item = %v", item)
	}
	outputs := h["outputs"].(map[string]any)
	if len(outputs) != 2 {
		t.Fatalf("outputs = %v", outputs)
	}
	for node, o := range outputs {
		for _, im := range o.(map[string]any)["images"].([]any) {
			im := im.(map[string]any)
			q := url.Values{"filename": {im["filename"].(string)}, "subfolder": {im["subfolder"].(string)}, "type": {im["type"].(string)}}
			resp, err := http.Get(ts.url + "/view?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(body, []byte("\x89PNG\r\n\x1a\n")) {
				t.Errorf("node %s image %v: %d %s, %d bytes", node, im, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
			}
		}
	}
	// The same prompt again is served from the cache, and says so.
	id2 := submit(t, ts.url, map[string]any{"prompt": prompt, "client_id": "script-1"})
	msgs = readUntil(t, ws, 20*time.Second, finished(id2))
	for _, m := range msgs {
		if m.Type == "execution_cached" && len(m.Data["nodes"].([]any)) == 6 {
			return
		}
	}
	t.Errorf("second run: no execution_cached with all 6 nodes: %v", msgs)
}

// TestMessagesGoToSubmitter: execution messages reach only the submitting
// client; status reaches everyone; a prompt without client_id reaches all.
func TestMessagesGoToSubmitter(t *testing.T) {
	ts := startServer(t, newHome(t))
	a := dialWS(t, ts.url, "?clientId=a")
	b := dialWS(t, ts.url, "")
	readUntil(t, a, 5*time.Second, func(m wsMsg) bool { return m.Type == "status" })
	hello := readUntil(t, b, 5*time.Second, func(m wsMsg) bool { return m.Type == "status" })
	if sid, _ := hello[0].Data["sid"].(string); sid == "" {
		t.Fatalf("a client without clientId gets a generated sid: %v", hello[0].Data)
	}
	id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(2, 1, false), "client_id": "a"})
	readUntil(t, a, 10*time.Second, finished(id))
	id2 := submit(t, ts.url, map[string]any{"prompt": slowPrompt(2, 1, false)})
	msgs := readUntil(t, b, 10*time.Second, finished(id2))
	for _, m := range msgs {
		if m.Data["prompt_id"] == id {
			t.Fatalf("client b got a message of a's prompt: %v", m)
		}
	}
	readUntil(t, a, 10*time.Second, finished(id2))
}

func TestNativeWorkflowAndPreviews(t *testing.T) {
	ts := startServer(t, newHome(t))
	ws := dialWS(t, ts.url, "?clientId=p")
	id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(3, 5, true), "client_id": "p"})
	msgs := readUntil(t, ws, 10*time.Second, finished(id))
	var previews, progress int
	var executed map[string]any
	for _, m := range msgs {
		switch m.Type {
		case "binary":
			// ComfyUI PREVIEW_IMAGE: event type 1, image type 2 (PNG), then the PNG.
			if !bytes.HasPrefix(m.Bin, []byte{0, 0, 0, 1, 0, 0, 0, 2, 0x89, 'P', 'N', 'G'}) {
				t.Errorf("preview frame starts % x", m.Bin[:min(12, len(m.Bin))])
			}
			previews++
		case "progress":
			progress++
			if m.Data["node"] != "slow" || m.Data["max"] != 3.0 || m.Data["prompt_id"] != id {
				t.Errorf("progress = %v", m.Data)
			}
		case "executed":
			executed = m.Data
		}
	}
	if previews != 3 || progress != 3 {
		t.Errorf("previews %d, progress %d; want 3 each", previews, progress)
	}
	if executed["node"] != "slow" || executed["display_node"] != "slow" || !reflect.DeepEqual(executed["output"], map[string]any{"text": []any{"done"}}) {
		t.Errorf("executed = %v", executed)
	}
}

// A client that announces supports_preview_metadata gets previews that name
// their node (PREVIEW_IMAGE_WITH_METADATA), others keep the plain form.
func TestPreviewMetadata(t *testing.T) {
	ts := startServer(t, newHome(t))
	ws := dialWS(t, ts.url, "?clientId=m")
	readUntil(t, ws, 5*time.Second, func(m wsMsg) bool { return m.Type == "status" })
	if err := ws.WriteJSON(map[string]any{"type": "feature_flags", "data": map[string]any{"supports_preview_metadata": true}}); err != nil {
		t.Fatal(err)
	}
	// The flag is read by the server's reader goroutine: wait until it has
	// taken it, not for a fixed time, before the first preview is sent.
	for deadline := time.Now().Add(time.Minute); !ts.hub.previewMetaOf("m"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never took the client's supports_preview_metadata flag")
		}
	}
	id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(2, 5, true), "client_id": "m"})
	msgs := readUntil(t, ws, time.Minute, finished(id))
	var seen int
	for _, m := range msgs {
		if m.Type != "binary" {
			continue
		}
		seen++
		if len(m.Bin) < 8 || binary.BigEndian.Uint32(m.Bin) != 4 {
			t.Fatalf("preview frame starts % x, want event type 4", m.Bin[:min(8, len(m.Bin))])
		}
		n := binary.BigEndian.Uint32(m.Bin[4:])
		var meta map[string]any
		if err := json.Unmarshal(m.Bin[8:8+n], &meta); err != nil {
			t.Fatal(err)
		}
		if meta["node_id"] != "slow" || meta["prompt_id"] != id || meta["image_type"] != "image/png" {
			t.Errorf("metadata = %v", meta)
		}
		if !bytes.HasPrefix(m.Bin[8+n:], []byte{0x89, 'P', 'N', 'G'}) {
			t.Error("no PNG after the metadata")
		}
	}
	if seen != 2 {
		t.Errorf("got %d previews, want 2", seen)
	}
}

func TestExecutionError(t *testing.T) {
	ts := startServer(t, newHome(t))
	ws := dialWS(t, ts.url, "?clientId=e")
	wf := map[string]any{"version": 1, "nodes": []any{map[string]any{"id": "f", "type": "Fail", "inputs": map[string]any{"message": "the node broke"}}}}
	id := submit(t, ts.url, map[string]any{"prompt": wf, "client_id": "e"})
	msgs := readUntil(t, ws, 10*time.Second, finished(id))
	var errMsg map[string]any
	for _, m := range msgs {
		if m.Type == "execution_error" {
			errMsg = m.Data
		}
	}
	if errMsg == nil {
		t.Fatalf("no execution_error: %v", msgs)
	}
	if errMsg["node_id"] != "f" || errMsg["node_type"] != "Fail" || !strings.Contains(errMsg["exception_message"].(string), "the node broke") {
		t.Errorf("execution_error = %v", errMsg)
	}
	for _, k := range []string{"prompt_id", "exception_type", "traceback", "executed"} {
		if _, ok := errMsg[k]; !ok {
			t.Errorf("execution_error lacks %q", k)
		}
	}
	h := waitHistory(t, ts.url, id)
	st := h["status"].(map[string]any)
	if st["status_str"] != "error" || st["completed"] != false {
		t.Errorf("status = %v", st)
	}
}

func TestInterrupt(t *testing.T) {
	ts := startServer(t, newHome(t))
	ws := dialWS(t, ts.url, "?clientId=i")
	id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(1000, 20, false), "client_id": "i"})
	readUntil(t, ws, 10*time.Second, func(m wsMsg) bool { return m.Type == "progress" })
	if code, out := call(t, "POST", ts.url+"/interrupt", map[string]any{"prompt_id": "someone-else"}); code != 200 || out["interrupted"] != false {
		t.Fatalf("interrupt of another prompt: %d %v", code, out)
	}
	start := time.Now()
	if code, out := call(t, "POST", ts.url+"/interrupt", nil); code != 200 || out["interrupted"] != true {
		t.Fatalf("interrupt: %d %v", code, out)
	}
	msgs := readUntil(t, ws, time.Minute, finished(id))
	// The node would sleep 20 s in all; ending well before that shows the
	// interrupt stopped it (a loaded machine may take seconds to say so).
	if time.Since(start) > 15*time.Second {
		t.Errorf("interrupt took %v; the node itself would have ended after 20 s", time.Since(start))
	}
	var got map[string]any
	for _, m := range msgs {
		if m.Type == "execution_interrupted" {
			got = m.Data
		}
	}
	if got == nil || got["prompt_id"] != id || got["node_id"] != "slow" {
		t.Fatalf("execution_interrupted = %v in %v", got, msgs)
	}
	if st := waitHistory(t, ts.url, id)["status"].(map[string]any); st["status_str"] != "error" {
		t.Errorf("status = %v", st)
	}
}

func TestPromptBadInput(t *testing.T) {
	ts := startServer(t, newHome(t))
	unknown := `{"prompt": {"1": {"class_type": "BoxBlurr", "inputs": {}}}}`
	badValue := `{"prompt": {"version": 1, "nodes": [{"id": "s", "type": "Slow", "inputs": {"steps": 0}}]}}`
	for _, tc := range []struct {
		name, body string
		code       int
		errType    string
		nodeErr    string // a node that must be in node_errors
	}{
		{"malformed JSON", `{"prompt": `, 400, "invalid_json", ""},
		{"not an object", `[1,2]`, 400, "invalid_json", ""},
		{"no prompt", `{"client_id": "x"}`, 400, "no_prompt", ""},
		{"null prompt", `{"prompt": null}`, 400, "no_prompt", ""},
		{"not a workflow", `{"prompt": {"a": 1}}`, 400, "invalid_prompt", ""},
		{"wrong version", `{"prompt": {"version": 9, "nodes": []}}`, 400, "invalid_prompt", ""},
		{"unknown node type", unknown, 400, "prompt_outputs_failed_validation", "1"},
		{"value out of range", badValue, 400, "prompt_outputs_failed_validation", "s"},
		{"bad prompt_id", `{"prompt": {"version": 1, "nodes": [{"id": "s", "type": "Slow"}]}, "prompt_id": "a/b"}`, 400, "invalid_prompt_id", ""},
		{"bad number", `{"prompt": {"version": 1, "nodes": [{"id": "s", "type": "Slow"}]}, "number": "x"}`, 400, "invalid_json", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, "POST", ts.url+"/prompt", tc.body)
			if code != tc.code {
				t.Fatalf("code %d, want %d: %v", code, tc.code, out)
			}
			e, _ := out["error"].(map[string]any)
			if e == nil || e["type"] != tc.errType || e["message"] == "" {
				t.Fatalf("error = %v, want type %s", out["error"], tc.errType)
			}
			for _, k := range []string{"details", "extra_info"} {
				if _, ok := e[k]; !ok {
					t.Errorf("error lacks %q", k)
				}
			}
			ne, ok := out["node_errors"].(map[string]any)
			if !ok {
				t.Fatalf("no node_errors object: %v", out)
			}
			if tc.nodeErr != "" {
				n, ok := ne[tc.nodeErr].(map[string]any)
				if !ok || len(n["errors"].([]any)) == 0 {
					t.Fatalf("node_errors = %v, want an entry for %s", ne, tc.nodeErr)
				}
			}
		})
	}
	// A duplicate prompt_id is refused.
	body := map[string]any{"prompt": slowPrompt(1, 0, false), "prompt_id": "mine-1"}
	if id := submit(t, ts.url, body); id != "mine-1" {
		t.Fatalf("prompt_id = %s", id)
	}
	if code, out := call(t, "POST", ts.url+"/prompt", body); code != 400 || out["error"].(map[string]any)["type"] != "duplicate_prompt_id" {
		t.Fatalf("duplicate: %d %v", code, out)
	}
	// Wrong method on a route.
	if code, _ := call(t, "DELETE", ts.url+"/prompt", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /prompt = %d", code)
	}
}

func TestObjectInfo(t *testing.T) {
	ts := startServer(t, newHome(t))
	code, all := call(t, "GET", ts.url+"/object_info", nil)
	if code != 200 {
		t.Fatal(code)
	}
	for _, n := range []string{"LoadImage", "SaveImage", "ImageScale", "BoxBlur", "Invert", "Slow"} {
		if _, ok := all[n]; !ok {
			t.Errorf("object_info lacks %s", n)
		}
	}
	_, one := call(t, "GET", ts.url+"/api/object_info/ImageScale", nil)
	info := one["ImageScale"].(map[string]any)
	req := info["input"].(map[string]any)["required"].(map[string]any)
	if got := req["images"]; !reflect.DeepEqual(got, []any{"IMAGE"}) {
		t.Errorf("images = %v", got)
	}
	if got := req["width"]; !reflect.DeepEqual(got, []any{"INT", map[string]any{"default": 512.0, "min": 1.0, "max": 8192.0, "step": 1.0}}) {
		t.Errorf("width = %v", got)
	}
	if got := req["method"].([]any); !reflect.DeepEqual(got[0], []any{"bilinear", "nearest", "catmull-rom"}) || got[1].(map[string]any)["default"] != "bilinear" {
		t.Errorf("method = %v", got)
	}
	for k, want := range map[string]any{"name": "ImageScale", "display_name": "ImageScale", "category": "image/transform", "output_node": false} {
		if info[k] != want {
			t.Errorf("%s = %v, want %v", k, info[k], want)
		}
	}
	if !reflect.DeepEqual(info["output"], []any{"IMAGE"}) || !reflect.DeepEqual(info["output_name"], []any{"IMAGE"}) {
		t.Errorf("output %v output_name %v", info["output"], info["output_name"])
	}
	sch := info["face0_schema"].(map[string]any)
	if sch["type"] != "object" || sch["properties"].(map[string]any)["width"] == nil {
		t.Errorf("face0_schema = %v", sch)
	}
	if types := info["face0_types"].(map[string]any); types["inputs"].(map[string]any)["images"] != "IMAGE" {
		t.Errorf("face0_types = %v", types)
	}
	if _, out := call(t, "GET", ts.url+"/object_info/NoSuchNode", nil); len(out) != 0 {
		t.Errorf("unknown class = %v, want {}", out)
	}
	if strength := all["Invert"].(map[string]any)["input"].(map[string]any)["required"].(map[string]any)["strength"].([]any); strength[1].(map[string]any)["display"] != "slider" {
		t.Errorf("Invert strength = %v", strength)
	}
}

func TestMiscRoutes(t *testing.T) {
	ts := startServer(t, newHome(t))
	_, st := call(t, "GET", ts.url+"/system_stats", nil)
	sys := st["system"].(map[string]any)
	if sys["embedded_python"] != false || !strings.HasPrefix(sys["python_version"].(string), "go") {
		t.Errorf("system = %v", sys)
	}
	dev := st["devices"].([]any)[0].(map[string]any)
	if dev["name"] != "cpu" || dev["type"] != "cpu" || dev["vram_total"].(float64) <= 0 {
		t.Errorf("devices = %v", dev)
	}
	resp, err := http.Get(ts.url + "/face0/workflow/default")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	example, _ := os.ReadFile("../examples/workflows/imagefx.json")
	if !bytes.Equal(body, example) || !bytes.Equal(DefaultWorkflow, example) {
		t.Errorf("default workflow differs from examples/workflows/imagefx.json; copy it to server/default_workflow.json")
	}
	resp, err = http.Get(ts.url + "/face0/types")
	if err != nil {
		t.Fatal(err)
	}
	var types []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&types)
	resp.Body.Close()
	found := false
	for _, ty := range types {
		if ty["name"] == "IMAGE" && strings.HasPrefix(ty["color"].(string), "#") {
			found = true
		}
	}
	if !found {
		t.Errorf("types = %v", types)
	}
	resp, err = http.Get(ts.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "object_info") {
		t.Errorf("placeholder page: %d %s", resp.StatusCode, page)
	}
	// Another site's page may not queue prompts on a local server.
	code, out := call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": slowPrompt(1, 0, false)}, "Origin", "http://evil.example")
	if code != 403 {
		t.Errorf("cross-origin POST = %d %v", code, out)
	}
	if _, _, err := websocketDialOrigin(ts.url, "http://evil.example"); err == nil {
		t.Errorf("cross-origin websocket accepted")
	}
}

func websocketDialOrigin(base, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{"Origin": {origin}}
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(base, ""), h)
	if c != nil {
		c.Close()
	}
	return c, resp, err
}

func TestEditorIsServed(t *testing.T) {
	files := fstest.MapFS{"index.html": {Data: []byte("<h1>editor</h1>")}, "assets/app.js": {Data: []byte("x()")}}
	ts := startServer(t, newHome(t), WithEditor(files))
	for path, want := range map[string]string{"/": "<h1>editor</h1>", "/assets/app.js": "x()"} {
		resp, err := http.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET %s = %d %q", path, resp.StatusCode, body)
		}
	}
}
