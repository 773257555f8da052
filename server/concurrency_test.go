package server

import (
	"testing"
	"time"
)

// With WithConcurrency(2), two queued prompts run at once (a server whose
// nodes run on workers); an interrupt without a prompt id stops both, and
// each gets its own history entry. By default one runs at a time.
func TestConcurrency(t *testing.T) {
	for _, c := range []struct {
		n, want int
	}{{1, 1}, {2, 2}} {
		home := newHome(t)
		ts := startServer(t, home, WithConcurrency(c.n))
		a := submit(t, ts.url, map[string]any{"prompt": slowPrompt(600, 100, false)})
		b := submit(t, ts.url, map[string]any{"prompt": slowPrompt(600, 100, false)})
		deadline := time.Now().Add(20 * time.Second)
		var running, pending []any
		for {
			_, q := call(t, "GET", ts.url+"/queue", nil)
			running, _ = q["queue_running"].([]any)
			pending, _ = q["queue_pending"].([]any)
			if len(running) == c.want || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(running) != c.want || len(running)+len(pending) != 2 {
			t.Fatalf("concurrency %d: %d running, %d pending; want %d running", c.n, len(running), len(pending), c.want)
		}
		if code, _ := call(t, "POST", ts.url+"/interrupt", map[string]any{}); code != 200 {
			t.Fatalf("interrupt: %d", code)
		}
		if c.n == 1 { // the second starts once the first is interrupted
			waitHistory(t, ts.url, a)
			for {
				_, out := call(t, "POST", ts.url+"/interrupt", map[string]any{})
				if out["interrupted"] == true || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		for _, id := range []string{a, b} {
			e := waitHistory(t, ts.url, id)
			if st, _ := e["status"].(map[string]any); st["status_str"] != "error" {
				t.Errorf("concurrency %d: prompt %s: status %v, want interrupted (error)", c.n, id, e["status"])
			}
		}
		ts.stop()
	}
}
