package server

import (
	"context"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/plugins/host"
)

// hostileBin is the plugin that misbehaves on purpose, built once.
var hostileBin = sync.OnceValues(func() (string, error) {
	return testplugin.Hostile(filepath.Dir(bins.face0))
})

// Issue 12, item 4: a plugin that hangs when asked for its nodes again (the
// refresh after each run, and on /object_info) holds up neither the queue nor
// /object_info.
func TestHungRefreshBlocksNeitherQueueNorObjectInfo(t *testing.T) {
	bin, err := hostileBin()
	if err != nil {
		t.Fatal(err)
	}
	home := newHome(t)
	a, err := app.Open(context.Background(), app.Options{
		Home: home, PluginsDir: filepath.Join(home, "no-plugins"), Log: io.Discard,
		Extra: []host.Source{{Name: "hostile", Path: bin, Env: []string{"HOSTILE=describe-hang-after=1"}}},
		// Only the start's Describe answers; every refresh hangs for good.
		Deadlines: host.Deadlines{Describe: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(a, filepath.Join(home, "server.db"), WithLog(io.Discard))
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	ts := startedServer(t, s, a)

	prompt := func(x int) map[string]any {
		return map[string]any{"prompt": map[string]any{"version": 1, "nodes": []any{
			map[string]any{"id": "w", "type": "Work", "inputs": map[string]any{"value": x}},
			map[string]any{"id": "e", "type": "Echo", "inputs": map[string]any{"x": map[string]any{"node": "w", "output": "INT"}}},
		}}}
	}
	// Each run ends with a refresh, which hangs: the next prompts run anyway.
	for i := range 3 {
		id := submit(t, ts.url, prompt(i))
		h := waitHistory(t, ts.url, id)
		if st, _ := h["status"].(map[string]any); st["status_str"] != "success" {
			t.Fatalf("prompt %d: %v", i, h["status"])
		}
	}
	// /object_info answers with the specs in force.
	done := make(chan map[string]any, 1)
	go func() {
		_, out := call(t, "GET", ts.url+"/object_info", nil)
		done <- out
	}()
	select {
	case out := <-done:
		if _, ok := out["Work"]; !ok {
			t.Fatalf("/object_info lacks the hostile plugin's nodes: %v", keys(out))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("/object_info waited for a hung refresh for 60 s")
	}
}

// startedServer serves s over HTTP until the test ends.
func startedServer(t *testing.T, s *Server, a *app.App) *testServer {
	t.Helper()
	ts := &testServer{Server: s, app: a}
	ts.http = httptest.NewServer(s.Handler())
	ts.url = ts.http.URL
	t.Cleanup(ts.stop)
	return ts
}

func keys(m map[string]any) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return strings.Join(out, ",")
}
