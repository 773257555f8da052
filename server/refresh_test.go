package server

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/host"
)

// A model written while the server runs (by a Train node, say) shows up in the
// model choices of /object_info without a restart.
func TestObjectInfoSeesNewModels(t *testing.T) {
	ts, a := startFace0Server(t)

	choices := func() []any {
		_, one := call(t, "GET", ts.url+"/object_info/EncodeText", nil)
		req := one["EncodeText"].(map[string]any)["input"].(map[string]any)["required"].(map[string]any)
		return req["model"].([]any)[0].([]any)
	}
	if c := choices(); len(c) != 0 {
		t.Fatalf("choices before any model: %v", c)
	}
	if err := sdmodel.Generate(filepath.Join(a.Dirs.Models, "fresh"), sdmodel.TinyConfig()); err != nil {
		t.Fatal(err)
	}
	ts.refresh(context.Background(), true) // what the next run's end or a later request does
	if c := choices(); !slices.Contains(c, any("fresh")) {
		t.Fatalf("choices after writing a model: %v", c)
	}
}

// A prompt that names a model written after the last refresh (or a node of
// a worker that joined since) is not refused: the failed validation starts
// a refresh and tries again with its specs.
func TestPromptStartsRefresh(t *testing.T) {
	ts, a := startFace0Server(t, WithPaused())
	if err := sdmodel.Generate(filepath.Join(a.Dirs.Models, "fresh"), sdmodel.TinyConfig()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the refresh at the server's start, if any
	wf := map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "t", "type": "EncodeText", "inputs": map[string]any{"model": "fresh", "text": "a"}},
	}}
	code, out := call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": wf})
	if code != 200 {
		t.Fatalf("POST /prompt naming a model written after the start: %d %v", code, out)
	}
}

// A prompt that names a model written just after a refresh began (a worker
// that joined a moment after a run ended, which refreshes) is not refused
// for the refresh being less than a second old: it waits for the next.
func TestPromptAfterRecentRefresh(t *testing.T) {
	ts, a := startFace0Server(t, WithPaused())
	// The model is made aside, and appears in one rename just after a
	// refresh (as a run's end starts one).
	aside := filepath.Join(t.TempDir(), "fresh")
	if err := sdmodel.Generate(aside, sdmodel.TinyConfig()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.Dirs.Models, 0o755); err != nil {
		t.Fatal(err)
	}
	<-ts.startRefresh(true)
	if err := os.Rename(aside, filepath.Join(a.Dirs.Models, "fresh")); err != nil {
		t.Fatal(err)
	}
	wf := map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "t", "type": "EncodeText", "inputs": map[string]any{"model": "fresh", "text": "a"}},
	}}
	code, out := call(t, "POST", ts.url+"/prompt", map[string]any{"prompt": wf})
	if code != 200 {
		t.Fatalf("POST /prompt naming a model that appeared just after a refresh: %d %v", code, out)
	}
}

// startFace0Server starts a server whose only pack is the Face0 pack (its
// EncodeText lists the models folder's models as choices).
func startFace0Server(t *testing.T, opts ...Option) (*testServer, *app.App) {
	t.Helper()
	home := newHome(t)
	a, err := app.Open(context.Background(), app.Options{
		Home: home, PluginsDir: filepath.Join(home, "no-plugins"), Log: io.Discard,
		Extra: []host.Source{{Name: "face0", Path: bins.face0, Args: []string{"plugin", "face0"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(a, filepath.Join(home, "server.db"), append([]Option{WithLog(io.Discard)}, opts...)...)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	ts := &testServer{Server: s, app: a}
	ts.http = httptest.NewServer(s.Handler())
	ts.url = ts.http.URL
	t.Cleanup(ts.stop)
	return ts, a
}
