package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// historyFiles lists the file records of a history entry's outputs.
func historyFiles(t *testing.T, h map[string]any) []map[string]any {
	t.Helper()
	if st := h["status"].(map[string]any); st["status_str"] != "success" {
		t.Fatalf("run failed: %v", h["status"])
	}
	var files []map[string]any
	for _, o := range h["outputs"].(map[string]any) {
		for _, im := range o.(map[string]any)["images"].([]any) {
			files = append(files, im.(map[string]any))
		}
	}
	return files
}

// checkServed fails unless /view answers every listed file with a PNG.
func checkServed(t *testing.T, base string, files []map[string]any, want int) {
	t.Helper()
	if len(files) != want {
		t.Fatalf("history lists %d files, want %d: %v", len(files), want, files)
	}
	for _, f := range files {
		q := url.Values{"filename": {f["filename"].(string)}, "subfolder": {f["subfolder"].(string)}, "type": {f["type"].(string)}}
		resp, err := http.Get(base + "/view?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("history lists %v, /view answers %d (%d bytes)", f, resp.StatusCode, len(body))
		}
	}
}

// TestHistoryFilesExistAfterCachedRun: a prompt whose images all come from
// the cache still leaves the files its history entry lists, also after the
// output and temp folders were emptied (issue 12, item 1): /view serves each.
func TestHistoryFilesExistAfterCachedRun(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	var prompt map[string]any
	if err := json.Unmarshal([]byte(comfyPrompt), &prompt); err != nil {
		t.Fatal(err)
	}
	// The example prompt plus a preview (written to the temp folder).
	prompt["7"] = map[string]any{"class_type": "PreviewImage", "inputs": map[string]any{"images": []any{"3", 0}}}

	first := historyFiles(t, waitHistory(t, ts.url, submit(t, ts.url, map[string]any{"prompt": prompt})))
	checkServed(t, ts.url, first, 3)

	for _, dir := range []string{"output", "temp"} {
		if err := os.RemoveAll(filepath.Join(home, dir)); err != nil {
			t.Fatal(err)
		}
	}
	h := waitHistory(t, ts.url, submit(t, ts.url, map[string]any{"prompt": prompt}))
	checkServed(t, ts.url, historyFiles(t, h), 3)
	// As in ComfyUI: one execution_cached, right after the start, naming the
	// nodes that did not run (not the savers, which had to).
	var types []string
	for _, m := range h["status"].(map[string]any)["messages"].([]any) {
		m := m.([]any)
		types = append(types, m[0].(string))
		if m[0] == "execution_cached" {
			if got := m[1].(map[string]any)["nodes"].([]any); len(got) != 4 {
				t.Errorf("cached %v, want the 4 nodes before the savers", got)
			}
		}
	}
	if len(types) < 2 || types[0] != "execution_start" || types[1] != "execution_cached" || slices.Index(types[2:], "execution_cached") >= 0 {
		t.Errorf("messages %v, want execution_start, then one execution_cached", types)
	}

	// With the files in place, the same prompt is all cached and lists the
	// same files, which are still served.
	id := submit(t, ts.url, map[string]any{"prompt": prompt})
	h = waitHistory(t, ts.url, id)
	again := historyFiles(t, h)
	checkServed(t, ts.url, again, 3)
	var cached []any
	for _, m := range h["status"].(map[string]any)["messages"].([]any) {
		if m := m.([]any); m[0] == "execution_cached" {
			cached = m[1].(map[string]any)["nodes"].([]any)
		}
	}
	if len(cached) != 7 {
		t.Errorf("unchanged prompt with its files in place: cached %v, want all 7 nodes", cached)
	}
}
