package server

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// LoadImage's image input is ComfyUI's list of the input folder's files,
// marked image_upload, in /object_info.
func TestLoadImageChoices(t *testing.T) {
	home := newHome(t)
	if err := os.MkdirAll(filepath.Join(home, "input", "faces", ".hidden"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"faces/b.jpg", "faces/.x.png", "faces/.hidden/y.png", "notes.txt", ".upload-123"} {
		if err := os.WriteFile(filepath.Join(home, "input", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, home)
	code, out := call(t, "GET", ts.url+"/object_info/LoadImage", nil)
	if code != 200 {
		t.Fatalf("GET /object_info/LoadImage: %d", code)
	}
	in := out["LoadImage"].(map[string]any)["input"].(map[string]any)["required"].(map[string]any)["image"].([]any)
	choices, _ := in[0].([]any)
	var names []string
	for _, c := range choices {
		names = append(names, c.(string))
	}
	if want := []string{"faces/b.jpg", "smiley.png"}; !slices.Equal(names, want) {
		t.Errorf("LoadImage's image choices are %v, want %v (images only, no hidden files)", names, want)
	}
	opts, _ := in[1].(map[string]any)
	if opts["image_upload"] != true {
		t.Errorf("LoadImage's image has options %v, want image_upload: true", opts)
	}
}

// A prompt naming an image copied into the input folder a moment ago (not
// uploaded, so nothing told the server) is accepted: the server asks the
// plugins for their specs again before it refuses a prompt. One naming an
// image that is not there is refused, saying where images go.
func TestChoicesRefreshBeforeValidation(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	if code, _ := call(t, "GET", ts.url+"/object_info", nil); code != 200 {
		t.Fatal("GET /object_info")
	}
	// No refresh in flight: only the refresh before refusing can see the file.
	for deadline := time.Now().Add(20 * time.Second); ts.pendingRefresh() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("a refresh never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	img, _ := os.ReadFile("../examples/inputs/smiley.png")
	if err := os.WriteFile(filepath.Join(home, "input", "fresh.png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	wf := func(name string) map[string]any {
		return map[string]any{"prompt": map[string]any{"version": 1, "nodes": []any{
			map[string]any{"id": "l", "type": "LoadImage", "inputs": map[string]any{"image": name}},
			map[string]any{"id": "p", "type": "PreviewImage", "inputs": map[string]any{"images": map[string]any{"node": "l", "output": "IMAGE"}}},
		}}}
	}
	id := submit(t, ts.url, wf("fresh.png"))
	if st := waitHistory(t, ts.url, id)["status"].(map[string]any); st["status_str"] != "success" {
		t.Fatalf("run of the fresh image: %v", st)
	}
	code, out := call(t, "POST", ts.url+"/prompt", wf("gone.png"))
	if code != 400 {
		t.Fatalf("a missing image: %d %v", code, out)
	}
	errs := out["node_errors"].(map[string]any)["l"].(map[string]any)["errors"].([]any)
	msg := errs[0].(map[string]any)["message"].(string)
	for _, want := range []string{`"gone.png"`, "upload the image", filepath.Join(home, "input")} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not say %q", msg, want)
		}
	}
}
