// Package e2e drives the browser editor in headless Chromium against a real
// `face0 serve`: it opens the default workflow, uploads the input image,
// queues the workflow, watches progress and the output images arrive, and
// checks validation errors, type checks, undo/redo, save/load (JSON and
// PNG), and persistence across reloads. Screenshots are written to
// $FACE0_ARTIFACTS (or a temporary folder) and their paths logged.
//
// It skips when no Chromium is installed; scripts/setup-browser.sh installs
// Debian's.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/editor"
	"github.com/face0/face0/internal/testenv"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("cannot find the module root from %s", root)
	}
	return root
}

func goBuild(t *testing.T, root, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// binaries builds face0, the example plugin and the engine's test pack once
// per test binary.
var binaries = sync.OnceValues(func() (map[string]string, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "face0-e2e-bin-")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	pkgs := map[string]string{"face0": "./cmd/face0", "imagefx": "./examples/plugins/imagefx", "testpack": "./internal/testplugin/testpack"}
	errs := make(chan error, len(pkgs))
	for name, pkg := range pkgs {
		out[name] = filepath.Join(dir, name)
		go func(bin, pkg string) {
			cmd := exec.Command("go", "build", "-o", bin, pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
			errs <- nil
		}(out[name], pkg)
	}
	for range pkgs {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	return out, nil
})

// server is a running `face0 serve`.
type server struct {
	base, home string
	stop       func()
}

// startServer builds face0 and the example plugin and runs `face0 serve` on a
// free port; it returns the base URL.
func startServer(t *testing.T, token string) (string, string) {
	t.Helper()
	s := startServerIn(t, token, t.TempDir(), false)
	return s.base, s.home
}

// startServerIn runs `face0 serve` on home (with the engine's test pack too,
// for its Sleep node, when testpack is set). stop ends it; so does the end
// of the test.
func startServerIn(t *testing.T, token, home string, testpack bool) *server {
	t.Helper()
	bins, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	plugins := []string{"imagefx"}
	if testpack {
		plugins = append(plugins, "testpack")
	}
	for _, p := range plugins {
		if err := os.Link(bins[p], filepath.Join(home, "plugins", p)); err != nil && !os.IsExist(err) {
			if b, err := os.ReadFile(bins[p]); err != nil || os.WriteFile(filepath.Join(home, "plugins", p), b, 0o755) != nil {
				t.Fatalf("install plugin %s: %v", p, err)
			}
		}
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bins["face0"], "serve", "--home", home, "--listen", addr, "--token", token)
	logs := &testenv.Buffer{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("face0 serve log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+"/object_info", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("face0 serve did not answer /object_info within 60s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &server{base: base, home: home, stop: stop}
}

// editorURL is where the editor is served: by face0 serve itself when the
// binary embeds it, else (a binary built without the editor wired in) by a
// proxy here that serves editor.FS() and passes the API through.
func editorURL(t *testing.T, base, token string) string {
	t.Helper()
	res, err := http.Get(base + "/?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), `<div id="root">`) {
		return base + "/?token=" + token
	}
	t.Logf("face0 serve does not serve the editor (is editor.FS() wired into cmd/face0?); serving editor.FS() through a proxy instead")
	target, _ := url.Parse(base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	files := http.FileServerFS(editor.FS())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/assets/") {
			files.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/?token=" + token
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("FACE0_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func count(p *page, selector string) int {
	p.t.Helper()
	var n int
	sel, _ := json.Marshal(selector)
	p.mustEval(fmt.Sprintf(`document.querySelectorAll(%s).length`, sel), &n)
	return n
}

// normalise decodes JSON into plain values, so that key order does not matter.
func normalise(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEditor(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	// With a token, as a server reachable by others runs: the editor takes it
	// from its URL and sends it on every request.
	const token = "e2e-secret-token"
	base, home := startServer(t, token)
	url := editorURL(t, base, token)
	shots := artifacts(t)
	root := moduleRoot(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBrowser(t, chromium, 1440, 900)
	p := b.newPage(ctx)

	// First visit: the default workflow.
	p.navigate(url)
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6`, 20*time.Second, "the default workflow's six nodes")
	p.waitFor(`document.querySelector(".f0-conn.on")`, 20*time.Second, "the websocket to connect")
	if n := count(p, ".react-flow__edge"); n != 5 {
		t.Errorf("default workflow shows %d links, want 5", n)
	}
	if n := count(p, ".f0-palette .f0-item"); n < 6 {
		t.Errorf("the palette lists %d node types, want at least 6", n)
	}
	// Widgets from the schemas: ImageScale's width is a number with bounds, method a dropdown.
	var w struct {
		Width, Min, Max string
		Options         int
	}
	p.mustEval(`(() => { const n = document.querySelector('.react-flow__node[data-id="scale"]');
		const i = n.querySelector('input[name="width"]'); const s = n.querySelector('select[name="method"]');
		return {width: i.value, min: i.min, max: i.max, options: s ? s.options.length : 0}; })()`, &w)
	if w.Width != "384" || w.Min != "1" || w.Max != "8192" || w.Options != 3 {
		t.Errorf("ImageScale widgets: %+v, want width 384 in [1, 8192] and a 3-choice method", w)
	}

	// The example image is not in the input folder yet: upload it through
	// LoadImage's upload button.
	p.setFiles(`.react-flow__node[data-id="load"] input[type=file]`, filepath.Join(root, "examples", "inputs", "smiley.png"))
	p.waitFor(`(() => { const i = document.querySelector('.react-flow__node[data-id="load"] img.f0-thumb'); return i && i.complete && i.naturalWidth > 0; })()`,
		20*time.Second, "the uploaded image's thumbnail")
	if _, err := os.Stat(filepath.Join(home, "input", "smiley.png")); err != nil {
		t.Errorf("upload did not reach the input folder: %v", err)
	}
	p.screenshot(filepath.Join(shots, "01-default-workflow.png"))

	// Watch the DOM for the running node's highlight and a progress bar.
	p.mustEval(`(() => { window.__seen = {executing: false, progress: false};
		new MutationObserver(() => {
			if (document.querySelector(".f0-node.executing")) window.__seen.executing = true;
			if (document.querySelector('.f0-progress > div[style*="width"]')) window.__seen.progress = true;
		}).observe(document.body, {subtree: true, attributes: true, childList: true}); return true; })()`, nil)

	p.click("#queue")
	p.waitFor(`document.querySelectorAll('.react-flow__node[data-id^="save_"] img.f0-output').length === 2 &&
		[...document.querySelectorAll('.react-flow__node[data-id^="save_"] img.f0-output')].every(i => i.complete && i.naturalWidth > 0)`,
		60*time.Second, "both SaveImage nodes to show their output image")
	p.waitFor(`document.getElementById("message").textContent === "Done"`, 20*time.Second, "the run to finish")
	var seen struct{ Executing, Progress bool }
	p.mustEval(`window.__seen`, &seen)
	var msgs []struct {
		Type string
		Node any
	}
	p.mustEval(`window.face0Messages`, &msgs)
	types := map[string]int{}
	for _, m := range msgs {
		types[m.Type]++
	}
	if !seen.Executing || types["executing"] == 0 {
		t.Errorf("no node was highlighted as executing (DOM %v, messages %v)", seen.Executing, types)
	}
	if !seen.Progress || types["progress"] == 0 {
		t.Errorf("no progress bar was shown (DOM %v, messages %v)", seen.Progress, types)
	}
	if count(p, ".f0-node.executing") != 0 {
		t.Errorf("a node is still highlighted as executing after the run")
	}
	p.screenshot(filepath.Join(shots, "02-after-run.png"))
	p.screenshotElement(`.react-flow__node[data-id="invert"]`, filepath.Join(shots, "02b-invert-node.png"), 3)

	// Queued again, every node comes from the cache; a node that changes
	// (and what reads from it) is no longer marked cached.
	p.click("#queue")
	p.waitFor(`document.querySelectorAll('.f0-badge').length && [...document.querySelectorAll('.react-flow__node')].every(n => [...n.querySelectorAll('.f0-badge')].some(b => b.textContent === "cached"))`,
		20*time.Second, "every node marked cached")
	p.typeInto(`.react-flow__node[data-id="scale"] input[name="width"]`, "380")
	p.key("Enter", 0)
	var cachedNow []string
	p.mustEval(`[...document.querySelectorAll('.react-flow__node')].filter(n => [...n.querySelectorAll('.f0-badge')].some(b => b.textContent === "cached")).map(n => n.dataset.id)`, &cachedNow)
	if strings.Join(cachedNow, ",") != "load" {
		t.Errorf("after changing ImageScale, nodes still marked cached: %v; want only load", cachedNow)
	}
	p.typeInto(`.react-flow__node[data-id="scale"] input[name="width"]`, "384")
	p.key("Enter", 0)
	var outName string
	p.mustEval(`document.querySelector('.react-flow__node[data-id="save_blur"] img.f0-output').title`, &outName)
	outputs, _ := filepath.Glob(filepath.Join(home, "output", "imagefx", "blur_*.png"))
	if len(outputs) == 0 {
		t.Fatalf("no blur output saved under %s", filepath.Join(home, "output"))
	}

	// LoadImage's image is a list of the input folder's images; the upload
	// is in it now.
	p.waitFor(`[...document.querySelectorAll('.react-flow__node[data-id="load"] select[name="image"] option')].some(o => o.value === "smiley.png")`,
		10*time.Second, "the uploaded image among LoadImage's choices")

	// A node that fails while running shows its error: a file in the input
	// folder that is not an image, chosen from LoadImage's list (R re-reads
	// the lists), queued with Ctrl+Enter.
	if err := os.WriteFile(filepath.Join(home, "input", "broken.png"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.click(".react-flow__pane")
	p.key("r", 0)
	p.waitFor(`[...document.querySelectorAll('.react-flow__node[data-id="load"] select[name="image"] option')].some(o => o.value === "broken.png")`,
		10*time.Second, "R to list the new file among LoadImage's choices")
	p.mustEval(`(() => { const s = document.querySelector('.react-flow__node[data-id="load"] select[name="image"]');
		Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "value").set.call(s, "broken.png");
		s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, nil)
	p.key("Enter", modCtrl)
	p.waitFor(`document.querySelector('.react-flow__node[data-id="load"] .f0-error')`, 20*time.Second, "LoadImage's execution error")
	var execErr string
	p.mustEval(`document.querySelector('.react-flow__node[data-id="load"] .f0-error').textContent`, &execErr)
	if !strings.Contains(execErr, "broken.png") {
		t.Errorf("LoadImage's error %q does not name the broken file", execErr)
	}
	p.screenshot(filepath.Join(shots, "02c-execution-error.png"))

	// A slow run (a large image, a wide blur): the running node is highlighted
	// with its progress bar, and Stop interrupts it.
	slow := strings.NewReplacer(`"width": 384, "height": 288`, `"width": 4096, "height": 3072`, `"radius": 3, "passes": 3`, `"radius": 64, "passes": 16`).
		Replace(string(mustRead(t, filepath.Join(root, "examples", "workflows", "imagefx.json"))))
	p.mustEval(fmt.Sprintf(`face0.load(%s), true`, slow), nil)
	p.waitFor(`(() => { const i = document.querySelector('.react-flow__node[data-id="blur"] input[name="passes"]'); return i && i.value === "16"; })()`,
		15*time.Second, "the slow workflow to load")
	p.click("#queue")
	p.waitFor(`document.querySelector('.react-flow__node[data-id="blur"] .f0-node.executing .f0-progress > div[style*="width"]:not([style*="width: 0%"])')`,
		30*time.Second, "BoxBlur to run and show progress")
	p.screenshot(filepath.Join(shots, "03-running.png"))
	p.click("#interrupt")
	p.waitFor(`document.getElementById("message").textContent === "Interrupted"`, 20*time.Second, "Stop to interrupt the run")
	if n := count(p, ".f0-node.executing"); n != 0 {
		t.Errorf("%d nodes still highlighted after the interrupt", n)
	}

	// Type check: an IMAGE output cannot feed a STRING input, IMAGE to IMAGE can.
	var why string
	p.mustEval(`face0.connect("load", "IMAGE", "save_blur", "filename_prefix")`, &why)
	if why == "" {
		t.Errorf("an IMAGE -> STRING link was accepted")
	}
	p.mustEval(`face0.connect("load", "IMAGE", "save_blur", "images")`, &why)
	if why != "" {
		t.Errorf("an IMAGE -> IMAGE link was refused: %s", why)
	}
	p.mustEval(`face0.undo(), ""`, nil)

	// Round trip: a workflow loaded and read back is the same workflow.
	raw := mustRead(t, filepath.Join(root, "examples", "workflows", "imagefx.json"))
	var wf map[string]any
	_ = json.Unmarshal(raw, &wf)
	for i, n := range wf["nodes"].([]any) {
		n.(map[string]any)["ui"] = map[string]any{"position": map[string]any{"x": float64(40 + 300*i), "y": float64(60 * i)}, "color": "#123456"}
	}
	wfJSON, _ := json.Marshal(wf)
	p.mustEval(fmt.Sprintf(`face0.load(%s)`, wfJSON), nil)
	var back any
	p.mustEval(`face0.workflow()`, &back)
	if !reflect.DeepEqual(normalise(t, wf), back) {
		got, _ := json.MarshalIndent(back, "", " ")
		t.Errorf("the workflow changed on its way through the editor:\n%s", got)
	}

	// Validation errors from the server show on the node and input: load a
	// workflow with an out-of-range width from a file, as a user would.
	bad := strings.Replace(string(raw), `"width": 384`, `"width": 0`, 1)
	badPath := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(badPath, []byte(bad), 0o644)
	p.setFiles("#load-file", badPath)
	p.waitFor(`(() => { const i = document.querySelector('.react-flow__node[data-id="scale"] input[name="width"]'); return i && i.value === "0"; })()`,
		20*time.Second, "the bad workflow to load")
	p.click("#queue")
	p.waitFor(`document.querySelector('.react-flow__node[data-id="scale"] .f0-row.bad[data-input="width"] .f0-input-error')`,
		20*time.Second, "the validation error on ImageScale's width")
	p.screenshot(filepath.Join(shots, "04-validation-error.png"))
	var errText string
	p.mustEval(`document.querySelector('.react-flow__node[data-id="scale"] .f0-input-error').textContent`, &errText)
	t.Logf("validation error shown: %s", errText)

	// Load the workflow back from a generated PNG dropped on the canvas.
	p.dropFile(".react-flow__pane", outputs[0], "image/png")
	p.waitFor(`(() => { const i = document.querySelector('.react-flow__node[data-id="scale"] input[name="width"]'); return i && i.value === "384"; })()`,
		20*time.Second, "the workflow from the PNG to load")
	if n := count(p, ".react-flow__node"); n != 6 {
		t.Errorf("the PNG's workflow has %d nodes, want 6", n)
	}
	if count(p, ".f0-input-error") != 0 {
		t.Errorf("validation errors stayed after loading another workflow")
	}

	// The palette: search, then click to add a node.
	p.click(".f0-search")
	p.mustEval(`(() => { const i = document.querySelector(".f0-search");
		const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
		set.call(i, "gray"); i.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, nil)
	p.waitFor(`document.querySelectorAll(".f0-palette .f0-item").length === 1`, 15*time.Second, "the palette search to narrow to Grayscale")
	p.click(`.f0-item[data-type="Grayscale"]`)
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 7`, 15*time.Second, "the Grayscale node to be added")

	// Copy and paste.
	p.waitFor(`face0.settled()`, 115*time.Second, "the change to settle into the history")
	p.click(`.react-flow__node[data-id="grayscale_1"] .f0-title`)
	p.key("c", modCtrl)
	p.key("v", modCtrl)
	p.waitFor(`document.querySelector('.react-flow__node[data-id="grayscale_2"]')`, 15*time.Second, "Ctrl+C, Ctrl+V to duplicate the node")
	p.waitFor(`face0.settled()`, 115*time.Second, "the change to settle into the history")
	p.key("z", modCtrl)
	p.waitFor(`!document.querySelector('.react-flow__node[data-id="grayscale_2"]')`, 15*time.Second, "Ctrl+Z to undo the paste")

	// Undo and redo with the keyboard.
	p.click(".react-flow__pane")
	p.key("z", modCtrl)
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6`, 15*time.Second, "Ctrl+Z to remove the added node")
	p.key("z", modCtrl|modShift)
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 7`, 15*time.Second, "Ctrl+Shift+Z to add it again")

	// Delete a node with the keyboard, then undo.
	p.click(`.react-flow__node[data-id="invert"] .f0-title`)
	p.key("Delete", 0)
	p.waitFor(`!document.querySelector('.react-flow__node[data-id="invert"]')`, 15*time.Second, "Delete to remove the Invert node")
	p.waitFor(`face0.settled()`, 115*time.Second, "the change to settle into the history")
	p.key("z", modCtrl)
	p.waitFor(`document.querySelector('.react-flow__node[data-id="invert"]') && document.querySelectorAll(".react-flow__edge").length === 5`,
		15*time.Second, "Ctrl+Z to bring the Invert node and its links back")

	// The graph survives a reload.
	p.waitFor(`face0.settled()`, 115*time.Second, "the change to settle into the history")
	var before any
	p.mustEval(`face0.workflow()`, &before)
	p.navigate(url)
	p.waitFor(`window.face0 && document.querySelectorAll(".react-flow__node").length === 7`, 20*time.Second, "the graph to come back after a reload")
	var after any
	p.mustEval(`face0.workflow()`, &after)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the graph changed across a reload")
	}
	p.screenshot(filepath.Join(shots, "05-after-reload.png"))
	t.Logf("screenshots in %s; the run's output image was %s", shots, outName)
}
