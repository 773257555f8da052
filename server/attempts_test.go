package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestCrashLoopingPrompt: a prompt during which the server dies (kill -9 of
// the server and its plugins, as a crash would leave them) runs again at the
// next start, but only DefaultMaxAttempts times; then it is marked failed,
// with the reason in its history entry, and the queue moves on.
func TestCrashLoopingPrompt(t *testing.T) {
	home := newHome(t)
	plugHome(t, home)
	var crashing, after string
	for round := 1; round <= DefaultMaxAttempts; round++ {
		p := startProc(t, home)
		if p.url == "" {
			t.Fatalf("round %d: the server did not start:\n%s", round, p.log())
		}
		ws := dialWS(t, p.url, "?clientId=crash")
		if round == 1 {
			crashing = submit(t, p.url, map[string]any{"prompt": slowPrompt(1000, 50, false), "client_id": "crash"})
			after = submit(t, p.url, map[string]any{"prompt": slowPrompt(1, 0, false), "client_id": "crash"})
		}
		// Running: the attempt is on disk before the first progress.
		awaitProgress(t, ws, crashing, round)
		p.kill9()
		assertNoTrace(t, fmt.Sprintf("round %d", round), p.log())
	}
	p := startProc(t, home)
	if p.url == "" {
		t.Fatalf("last start: %s", p.log())
	}
	h := waitHistory(t, p.url, crashing)
	st := h["status"].(map[string]any)
	if st["status_str"] != "error" || st["completed"] != false {
		t.Fatalf("status of the crashing prompt = %v", st)
	}
	reason := ""
	for _, m := range st["messages"].([]any) {
		if m := m.([]any); m[0] == "execution_error" {
			reason, _ = m[1].(map[string]any)["exception_message"].(string)
		}
	}
	if !strings.Contains(reason, "crashed or was killed") || !strings.Contains(reason, fmt.Sprint(DefaultMaxAttempts)) {
		t.Fatalf("the history entry does not give the reason: %q", reason)
	}
	if !strings.Contains(p.log(), crashing) {
		t.Errorf("the server's log does not name the prompt it gave up on:\n%s", p.log())
	}
	if st := waitHistory(t, p.url, after)["status"].(map[string]any); st["status_str"] != "success" {
		t.Fatalf("the prompt queued behind it: %v", st)
	}
	p.stop(t)
}

// TestShutdownDoesNotCountAsAttempt: stopping the server on purpose while a
// prompt runs, more often than the attempt limit, still lets it run to the end.
func TestShutdownDoesNotCountAsAttempt(t *testing.T) {
	home := newHome(t)
	var id string
	for round := 0; round <= DefaultMaxAttempts; round++ {
		ts := startServer(t, home)
		ws := dialWS(t, ts.url, "?clientId=s")
		if round == 0 {
			id = submit(t, ts.url, map[string]any{"prompt": slowPrompt(1000, 20, false), "client_id": "s"})
		}
		awaitProgress(t, ws, id, round)
		ts.stop()
	}
	ts := startServer(t, home)
	code, q := call(t, "GET", ts.url+"/queue", nil)
	running := q["queue_running"].([]any)
	pending := q["queue_pending"].([]any)
	if code != 200 || len(running)+len(pending) != 1 {
		t.Fatalf("after %d shutdowns the prompt is not queued: %v", DefaultMaxAttempts+1, q)
	}
	if h, _ := ts.store.historyOne(id); h != nil {
		t.Fatalf("the prompt was given up: %s", h)
	}
	ts.interrupt(id) // no need to wait out its 20 seconds
}

// awaitProgress waits until prompt id reports progress, failing if it ends
// instead.
func awaitProgress(t testing.TB, ws *websocket.Conn, id string, round int) {
	t.Helper()
	msgs := readUntil(t, ws, time.Minute, func(m wsMsg) bool {
		return m.Type == "progress" && m.Data["prompt_id"] == id || finished(id)(m)
	})
	if last := msgs[len(msgs)-1]; last.Type != "progress" {
		t.Fatalf("round %d: the prompt ended instead of running: %v", round, msgs)
	}
}
