package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/plugins/host"
)

// Real plugin processes: the face0 binary (for the built-in image pack), the
// example imagefx plugin and the test-only slowpack, built once.
var bins struct {
	face0, imagefx, slowpack string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "face0-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.face0 = filepath.Join(dir, "face0")
	bins.imagefx = filepath.Join(dir, "imagefx")
	bins.slowpack = filepath.Join(dir, "slowpack")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, b := range []struct{ out, pkg string }{
		{bins.face0, "../cmd/face0"}, {bins.imagefx, "../examples/plugins/imagefx"}, {bins.slowpack, "./testdata/slowpack"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newHome makes a face0 HOME with the example image in its input folder.
func newHome(t testing.TB) string {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "input"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile("../examples/inputs/smiley.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "input", "smiley.png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

// testServer is a Server on a real listener, over a real App.
type testServer struct {
	*Server
	app  *app.App
	http *httptest.Server
	url  string
	once sync.Once
}

func (ts *testServer) stop() {
	ts.once.Do(func() {
		ts.http.Close()
		ts.Server.Close()
		ts.app.Close()
	})
}

func startServer(t testing.TB, home string, opts ...Option) *testServer {
	t.Helper()
	a, err := app.Open(context.Background(), app.Options{
		Home: home, PluginsDir: filepath.Join(home, "no-plugins"), Log: io.Discard,
		Extra: []host.Source{
			{Name: "image", Path: bins.face0, Args: []string{"plugin", "image"}},
			{Name: "imagefx", Path: bins.imagefx},
			{Name: "slowpack", Path: bins.slowpack},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Problems) > 0 {
		t.Fatalf("plugin problems: %v", a.Problems)
	}
	opts = append([]Option{WithLog(io.Discard)}, opts...)
	s, err := New(a, filepath.Join(home, "server.db"), opts...)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	ts := &testServer{Server: s, app: a, http: hs, url: hs.URL}
	t.Cleanup(ts.stop)
	return ts
}

// call does an HTTP request and decodes a JSON answer (nil if not JSON).
func call(t testing.TB, method, url string, body any, hdr ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func wsURL(base, query string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws" + query
}

func dialWS(t testing.TB, base, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(base, query), nil)
	if err != nil {
		t.Fatalf("dial ws: %v (%v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wsMsg is a received websocket message: JSON (Type, Data) or binary (Bin).
type wsMsg struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
	Bin  []byte         `json:"-"`
}

// readUntil reads messages until done returns true, failing after timeout.
func readUntil(t testing.TB, c *websocket.Conn, timeout time.Duration, done func(wsMsg) bool) []wsMsg {
	t.Helper()
	var got []wsMsg
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	for {
		kind, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("websocket read after %d messages: %v; got %v", len(got), err, got)
		}
		var m wsMsg
		if kind == websocket.BinaryMessage {
			m = wsMsg{Type: "binary", Bin: b}
		} else if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message is not JSON: %s", b)
		}
		got = append(got, m)
		if done(m) {
			return got
		}
	}
}

// finished matches ComfyUI's end-of-prompt marker: executing with node null.
func finished(id string) func(wsMsg) bool {
	return func(m wsMsg) bool {
		return m.Type == "executing" && m.Data["node"] == nil && m.Data["prompt_id"] == id
	}
}

func loadJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// slowPrompt is a native workflow of one Slow node.
func slowPrompt(steps, delayMS int, preview bool) map[string]any {
	return map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "slow", "type": "Slow", "inputs": map[string]any{"steps": steps, "delay_ms": delayMS, "preview": preview}},
	}}
}

func submit(t testing.TB, base string, body map[string]any) string {
	t.Helper()
	code, out := call(t, "POST", base+"/prompt", body)
	if code != 200 {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	id, _ := out["prompt_id"].(string)
	if id == "" {
		t.Fatalf("POST /prompt gave no prompt_id: %v", out)
	}
	return id
}

// waitHistory polls /history/{id} like a ComfyUI script does.
func waitHistory(t testing.TB, base, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, out := call(t, "GET", base+"/history/"+id, nil)
		if e, ok := out[id].(map[string]any); ok {
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("prompt %s never reached the history", id)
	return nil
}

var jsonUnmarshal = json.Unmarshal

// previewMetaOf reports whether a client of session sid has announced
// supports_preview_metadata and the server's reader has taken it.
func (h *hub) previewMetaOf(sid string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if c.sid == sid && c.previewMeta.Load() {
			return true
		}
	}
	return false
}
