package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// apiJSON fetches a route of the server as JSON.
func apiJSON(t *testing.T, base, token, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// pendingIDs is GET /queue's pending prompt ids in run order.
func pendingIDs(t *testing.T, base, token string) (running []string, pending []string) {
	t.Helper()
	var q struct {
		Running [][]any `json:"queue_running"`
		Pending [][]any `json:"queue_pending"`
	}
	apiJSON(t, base, token, "/queue", &q)
	type item struct {
		n  float64
		id string
	}
	var items []item
	for _, p := range q.Pending {
		items = append(items, item{p[0].(float64), p[1].(string)})
	}
	for i := range items {
		for j := i + 1; j < len(items); j++ {
			if items[j].n < items[i].n {
				items[i], items[j] = items[j], items[i]
			}
		}
	}
	for _, it := range items {
		pending = append(pending, it.id)
	}
	for _, r := range q.Running {
		running = append(running, r[1].(string))
	}
	return running, pending
}

// sleepWorkflow runs a test-pack Sleep for ten minutes (progress each
// second) into an output node: it stays running until stopped.
const sleepWorkflow = `{"version": 1, "name": "sleep", "nodes": [
 {"id": "sleep", "type": "Sleep", "inputs": {"ms": 600000, "steps": 600}, "ui": {"position": {"x": 0, "y": 0}}},
 {"id": "write", "type": "WriteTextUnchecked", "inputs": {"value": {"node": "sleep", "output": "INT"}}, "ui": {"position": {"x": 340, "y": 0}}}]}`

// TestEditorQueue checks the queue and history panel and the gallery: a
// batch queued from the toolbar, past runs with thumbnails, the lightbox,
// loading a past run's workflow back, cancelling a pending prompt and moving
// one to the front, the running prompt's progress, and the history and
// gallery after a server restart.
func TestEditorQueue(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	const token = "queue-token"
	home := t.TempDir()
	root := moduleRoot(t)
	if err := os.MkdirAll(filepath.Join(home, "input"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "input", "smiley.png"), mustRead(t, filepath.Join(root, "examples", "inputs", "smiley.png")), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServerIn(t, token, home, true)
	url := editorURL(t, srv.base, token)
	shots := artifacts(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBrowser(t, chromium, 1440, 900)
	p := b.newPage(ctx)
	p.navigate(url)
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6 && document.querySelector(".f0-conn.on")`, 20*time.Second, "the default workflow")

	// A batch of two from the toolbar: two runs in the history, with thumbnails.
	p.click("#toggle-queue")
	p.waitFor(`document.getElementById("queue-panel")`, waitShort, "the queue panel")
	p.mustEval(`(() => { const i = document.getElementById("batch-count");
		const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
		set.call(i, "2"); i.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, nil)
	p.click("#queue")
	p.waitFor(`document.querySelectorAll('#queue-panel .f0-q-item.done.success').length === 2`, 60*time.Second, "two successful runs in the history")
	p.waitFor(`(() => { const t = [...document.querySelectorAll('#queue-panel .f0-q-item.done .f0-hist-thumb')];
		return t.length === 4 && t.every(i => i.complete && i.naturalWidth > 0); })()`, 20*time.Second, "the runs' thumbnails (two images each)")
	p.screenshot(filepath.Join(shots, "20-queue-history.png"))

	// The gallery and its lightbox.
	p.click("#tab-gallery")
	p.waitFor(`document.querySelectorAll('#queue-panel .f0-gallery .f0-hist-thumb').length === 4`, 10*time.Second, "four images in the gallery")
	p.click(`#queue-panel .f0-gallery .f0-hist-thumb`)
	p.waitFor(`(() => { const i = document.querySelector('.f0-lightbox-img'); return i && i.complete && i.naturalWidth > 0; })()`, 10*time.Second, "the lightbox image")
	p.key("ArrowRight", 0)
	p.waitFor(`document.querySelector('.f0-lightbox-caption').textContent.startsWith("2 / 4")`, waitShort, "the next image in the lightbox")
	p.screenshot(filepath.Join(shots, "21-lightbox.png"))
	p.key("Escape", 0)
	p.waitFor(`!document.querySelector('.f0-lightbox')`, waitShort, "Escape to close the lightbox")

	// A past run's workflow loads back into the canvas, after asking, since
	// the graph has changed.
	p.typeInto(`.react-flow__node[data-id="scale"] input[name="width"]`, "100")
	p.key("Enter", 0)
	p.click("#tab-queue")
	p.click(`#queue-panel .f0-q-item.done .f0-h-load`)
	p.waitFor(`document.querySelector('.f0-dialog')`, waitShort, "the question before the changed graph is replaced")
	p.click("#confirm-yes")
	p.waitFor(`document.querySelector('.react-flow__node[data-id="scale"] input[name="width"]').value === "384"`, 10*time.Second, "the past run's workflow")

	// Three long prompts: one runs (with its progress), two wait. The last
	// moves to the front; the other is cancelled.
	p.mustEval(fmt.Sprintf(`face0.load(%s)`, sleepWorkflow), nil)
	p.waitFor(`document.querySelector('.react-flow__node[data-id="sleep"]')`, 10*time.Second, "the Sleep workflow")
	p.mustEval(`face0.queue(3)`, nil)
	p.waitFor(`document.querySelectorAll('#queue-panel .f0-q-item.running').length === 1 && document.querySelectorAll('#queue-panel .f0-q-item.pending').length === 2`,
		20*time.Second, "one running and two pending prompts")
	p.waitFor(`/· [1-9][0-9]*\/600/.test(document.querySelector('#queue-panel .f0-q-item.running .f0-q-progress').textContent)`, 20*time.Second, "the running prompt's progress")
	running, pending := pendingIDs(t, srv.base, token)
	if len(running) != 1 || len(pending) != 2 {
		t.Fatalf("GET /queue: running %v, pending %v; want 1 and 2", running, pending)
	}
	p.screenshot(filepath.Join(shots, "22-queue-running.png"))
	p.click(fmt.Sprintf(`#queue-panel .f0-q-item.pending[data-prompt=%q] .f0-q-front`, pending[1]))
	p.waitFor(fmt.Sprintf(`document.querySelector('#queue-panel .f0-q-item.pending').dataset.prompt === %q`, pending[1]), 10*time.Second, "the last prompt to move to the front")
	if _, now := pendingIDs(t, srv.base, token); len(now) != 2 || now[0] != pending[1] || now[1] != pending[0] {
		t.Errorf("after moving %s to the front the server's queue is %v", pending[1], now)
	}
	p.click(fmt.Sprintf(`#queue-panel .f0-q-item.pending[data-prompt=%q] .f0-q-cancel`, pending[0]))
	p.waitFor(`document.querySelectorAll('#queue-panel .f0-q-item.pending').length === 1`, 10*time.Second, "the cancelled prompt to leave the queue")
	if _, now := pendingIDs(t, srv.base, token); len(now) != 1 || now[0] != pending[1] {
		t.Errorf("after cancelling %s the server's queue is %v", pending[0], now)
	}
	// Stop the running one: the moved prompt runs next.
	p.click(`#queue-panel .f0-q-item.running button`)
	p.waitFor(fmt.Sprintf(`(() => { const r = document.querySelector('#queue-panel .f0-q-item.running'); return r && r.dataset.prompt === %q; })()`, pending[1]),
		20*time.Second, "the prompt moved to the front to run next")
	p.click(`#queue-panel .f0-q-item.running button`)
	p.waitFor(`!document.querySelector('#queue-panel .f0-q-item.running') && !document.querySelector('#queue-panel .f0-q-item.pending')`, 20*time.Second, "an empty queue")

	// The history, and so the gallery, survives a restart of the server.
	srv.stop()
	srv2 := startServerIn(t, token, home, true)
	p.navigate(editorURL(t, srv2.base, token))
	p.waitFor(`window.face0 && document.querySelector(".f0-conn.on")`, 20*time.Second, "the editor on the restarted server")
	p.click("#toggle-queue")
	p.click("#tab-gallery")
	p.waitFor(`(() => { const t = [...document.querySelectorAll('#queue-panel .f0-gallery .f0-hist-thumb')];
		return t.length === 4 && t.every(i => i.complete && i.naturalWidth > 0); })()`, 20*time.Second, "the gallery after the restart")
	p.screenshot(filepath.Join(shots, "23-gallery-after-restart.png"))
}
