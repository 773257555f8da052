package e2e

// A small Chrome DevTools Protocol client over --remote-debugging-pipe: Chrome
// reads commands from file descriptor 3 and writes answers and events to
// descriptor 4, each message JSON ended by a NUL byte. It needs no websocket
// library and no port.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
)

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	w      io.WriteCloser
	mu     sync.Mutex
	next   int64
	wait   map[int64]chan cdpMessage
	onEvt  func(cdpMessage)
	closed chan struct{}
}

// findChromium returns the browser to use, or "" when none is installed.
func findChromium() string {
	if p := os.Getenv("FACE0_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func startBrowser(t *testing.T, bin string, width, height int) *browser {
	t.Helper()
	// Chrome writes its answers to our read end (its fd 4) and reads commands
	// from our write end (its fd 3).
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--remote-debugging-pipe",
		"about:blank",
	}
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3, fd 4
	logf, _ := os.Create(t.TempDir() + "/chromium.log")
	cmd.Stdout = logf
	cmd.Stderr = logf
	testenv.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	cmdR.Close()
	outW.Close()
	b := &browser{t: t, cmd: cmd, w: cmdW, wait: map[int64]chan cdpMessage{}, closed: make(chan struct{})}
	go b.read(outR)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, _ = b.call(ctx, "", "Browser.close", nil)
		cancel()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		cmdW.Close()
		outR.Close()
		logf.Close()
	})
	return b
}

func (b *browser) read(r io.Reader) {
	defer close(b.closed)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMessage
		if json.Unmarshal(line[:len(line)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.wait[m.ID]
			delete(b.wait, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		b.mu.Lock()
		f := b.onEvt
		b.mu.Unlock()
		if f != nil {
			f(m)
		}
	}
}

func (b *browser) call(ctx context.Context, session, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMessage, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	p, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	if params == nil {
		p = []byte("{}")
	}
	msg, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: p, SessionID: session})
	b.mu.Lock()
	_, err = b.w.Write(append(msg, 0))
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-b.closed:
		return nil, fmt.Errorf("%s: the browser went away", method)
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.wait, id)
		b.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is one tab.
type page struct {
	b       *browser
	t       *testing.T
	session string
	ctx     context.Context

	netMu sync.Mutex
	net   map[string]*transfer // by request id, while recording

	errMu  sync.Mutex
	errors []string // uncaught exceptions and console.error/warn: each fails the test
}

func (b *browser) newPage(ctx context.Context) *page {
	b.t.Helper()
	res, err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		b.t.Fatal(err)
	}
	var tg struct{ TargetID string }
	_ = json.Unmarshal(res, &tg)
	res, err = b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": tg.TargetID, "flatten": true})
	if err != nil {
		b.t.Fatal(err)
	}
	var at struct{ SessionID string }
	_ = json.Unmarshal(res, &at)
	p := &page{b: b, t: b.t, session: at.SessionID, ctx: ctx}
	b.mu.Lock()
	b.onEvt = func(m cdpMessage) {
		if m.SessionID != p.session {
			return
		}
		switch m.Method {
		case "Runtime.consoleAPICalled":
			var e struct {
				Type string
				Args []struct {
					Value       any
					Description string
				}
			}
			_ = json.Unmarshal(m.Params, &e)
			var parts []string
			for _, a := range e.Args {
				if a.Value != nil {
					parts = append(parts, fmt.Sprint(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			b.t.Logf("browser console.%s: %s", e.Type, strings.Join(parts, " "))
			if e.Type == "error" || e.Type == "warning" || e.Type == "assert" {
				p.noteError("console." + e.Type + ": " + strings.Join(parts, " "))
			}
		case "Runtime.exceptionThrown":
			b.t.Logf("browser exception: %s", m.Params)
			var e struct {
				ExceptionDetails struct {
					Text      string
					Exception struct{ Description string }
				}
			}
			_ = json.Unmarshal(m.Params, &e)
			p.noteError("uncaught " + e.ExceptionDetails.Text + " " + e.ExceptionDetails.Exception.Description)
		case "Network.responseReceived", "Network.loadingFinished", "Network.requestServedFromCache":
			p.noteNetwork(m)
		}
	}
	b.mu.Unlock()
	// The editor runs without console errors or uncaught exceptions: any
	// seen in a test fails it.
	b.t.Cleanup(func() {
		p.errMu.Lock()
		defer p.errMu.Unlock()
		for _, e := range p.errors {
			p.t.Errorf("the page logged an error: %s", e)
		}
	})
	// A tab in the background has its timers throttled; the editor's history
	// records changes after a short timer.
	for _, m := range []string{"Page.enable", "Runtime.enable", "DOM.enable", "Page.bringToFront"} {
		p.do(m, nil)
	}
	return p
}

func (p *page) do(method string, params any) json.RawMessage {
	p.t.Helper()
	res, err := p.b.call(p.ctx, p.session, method, params)
	if err != nil {
		p.t.Fatal(err)
	}
	return res
}

func (p *page) navigate(url string) {
	p.t.Helper()
	p.do("Page.navigate", map[string]any{"url": url})
	p.waitFor(`document.readyState === "complete"`, 20*time.Second, "the page to load")
}

// eval runs a JavaScript expression (promises awaited) and decodes its value into out.
func (p *page) eval(expr string, out any) error {
	res, err := p.b.call(p.ctx, p.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	})
	if err != nil {
		return err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

func (p *page) mustEval(expr string, out any) {
	p.t.Helper()
	if err := p.eval(expr, out); err != nil {
		p.t.Fatal(err)
	}
}

// waitShort bounds a wait for what the page does at once (a click's effect,
// a node appearing). It guards against a hang and measures nothing: a loaded
// machine (CI shares two cores with whatever else runs) has taken over 5 s.
const waitShort = 30 * time.Second

// waitFor polls a JavaScript expression until it is truthy.
func (p *page) waitFor(expr string, timeout time.Duration, what string) {
	p.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		var ok bool
		if lastErr = p.eval("!!("+expr+")", &ok); lastErr == nil && ok {
			if d := time.Since(start); d > 2*time.Second {
				p.t.Logf("waited %s for %s", d.Round(100*time.Millisecond), what)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var msg string
	_ = p.eval(`(document.getElementById("message")||{}).textContent || ""`, &msg)
	p.t.Fatalf("timed out after %s waiting for %s (%s); last error %v; editor message %q", timeout, what, expr, lastErr, msg)
}

// Key modifiers of Input.dispatchKeyEvent.
const (
	modCtrl  = 2
	modShift = 8
)

// setFiles puts files into an <input type=file>, as choosing them in the dialog would.
func (p *page) setFiles(selector string, files ...string) {
	p.t.Helper()
	var doc struct{ Root struct{ NodeID int64 } }
	_ = json.Unmarshal(p.do("DOM.getDocument", map[string]any{"depth": 0}), &doc)
	var q struct{ NodeID int64 }
	_ = json.Unmarshal(p.do("DOM.querySelector", map[string]any{"nodeId": doc.Root.NodeID, "selector": selector}), &q)
	if q.NodeID == 0 {
		p.t.Fatalf("no element %s", selector)
	}
	p.do("DOM.setFileInputFiles", map[string]any{"files": files, "nodeId": q.NodeID})
}

// screenshot saves the page as a PNG.
func (p *page) screenshot(path string) {
	p.t.Helper()
	var r struct{ Data string }
	_ = json.Unmarshal(p.do("Page.captureScreenshot", map[string]any{"format": "png"}), &r)
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(b) == 0 {
		p.t.Fatalf("screenshot: %v", errors.Join(err, errors.New("empty image")))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// screenshotElement saves one element, magnified, as a PNG.
func (p *page) screenshotElement(selector, path string, scale float64) {
	p.t.Helper()
	var r struct{ X, Y, W, H float64 }
	sel, _ := json.Marshal(selector)
	p.mustEval(fmt.Sprintf(`(() => { const r = document.querySelector(%s).getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()`, sel), &r)
	var res struct{ Data string }
	_ = json.Unmarshal(p.do("Page.captureScreenshot", map[string]any{"format": "png",
		"clip": map[string]any{"x": r.X, "y": r.Y, "width": r.W, "height": r.H, "scale": scale}}), &res)
	b, _ := base64.StdEncoding.DecodeString(res.Data)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// dropFile drops a file onto an element: a drop event carrying the file, as
// dragging it from a file manager gives. (Input.dispatchDragEvent does the
// same from outside the page, but loses events on a busy machine.)
func (p *page) dropFile(selector, path, mime string) {
	p.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		p.t.Fatal(err)
	}
	sel, _ := json.Marshal(selector)
	name, _ := json.Marshal(filepath.Base(path))
	p.mustEval(fmt.Sprintf(`(() => {
		const bin = atob(%q); const bytes = new Uint8Array(bin.length);
		for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
		const dt = new DataTransfer(); dt.items.add(new File([bytes], %s, {type: %q}));
		const el = document.querySelector(%s); const r = el.getBoundingClientRect();
		const at = {bubbles: true, cancelable: true, dataTransfer: dt, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2};
		for (const type of ["dragenter", "dragover", "drop"]) el.dispatchEvent(new DragEvent(type, at));
		return true; })()`, base64.StdEncoding.EncodeToString(b), name, mime, sel), nil)
}

func (p *page) noteError(e string) {
	p.errMu.Lock()
	p.errors = append(p.errors, e)
	p.errMu.Unlock()
}

// settleTimers lets the timers the page set so far run: after a drag, the
// drag library swallows the next click until its zero-delay timer fires,
// so a click sent at once would be lost.
func (p *page) settleTimers() {
	p.t.Helper()
	p.mustEval(`new Promise(r => setTimeout(() => r(true), 0))`, nil)
}

// rect is an element's box on the page.
func (p *page) rect(selector string) (r struct{ X, Y, W, H float64 }) {
	p.t.Helper()
	sel, _ := json.Marshal(selector)
	p.mustEval(fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) throw new Error("no element " + %s); const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()`, sel, sel), &r)
	return r
}
