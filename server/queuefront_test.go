package server

import (
	"reflect"
	"sort"
	"testing"
)

// pendingOrder is GET /queue's pending prompt ids in the order they run.
func pendingOrder(t *testing.T, base string) []string {
	t.Helper()
	code, out := call(t, "GET", base+"/queue", nil)
	if code != 200 {
		t.Fatalf("GET /queue: %d", code)
	}
	items := out["queue_pending"].([]any)
	sort.Slice(items, func(i, j int) bool { return items[i].([]any)[0].(float64) < items[j].([]any)[0].(float64) })
	var ids []string
	for _, it := range items {
		ids = append(ids, it.([]any)[1].(string))
	}
	return ids
}

// POST /face0/queue/front (the queue panel's "front" button) runs a pending
// prompt next; the new order is stored, so a restart keeps it. A prompt that
// is not pending is refused with 404.
func TestQueueFront(t *testing.T) {
	home := newHome(t)
	paused := startServer(t, home, WithPaused())
	var ids []string
	for range 3 {
		ids = append(ids, submit(t, paused.url, map[string]any{"prompt": slowPrompt(1, 0, false)}))
	}
	if got := pendingOrder(t, paused.url); !reflect.DeepEqual(got, ids) {
		t.Fatalf("queued %v, pending %v", ids, got)
	}
	if code, out := call(t, "POST", paused.url+"/face0/queue/front", map[string]any{"prompt_id": ids[2]}); code != 200 {
		t.Fatalf("POST /face0/queue/front: %d %v", code, out)
	}
	want := []string{ids[2], ids[0], ids[1]}
	if got := pendingOrder(t, paused.url); !reflect.DeepEqual(got, want) {
		t.Errorf("after moving %s to the front: %v, want %v", ids[2], got, want)
	}
	// The first one again: nothing changes.
	if code, _ := call(t, "POST", paused.url+"/api/face0/queue/front", map[string]any{"prompt_id": ids[2]}); code != 200 {
		t.Errorf("moving the first prompt to the front: %d", code)
	}
	if code, out := call(t, "POST", paused.url+"/face0/queue/front", map[string]any{"prompt_id": "no-such-prompt"}); code != 404 {
		t.Errorf("an unknown prompt: %d %v, want 404", code, out)
	}
	paused.stop()

	again := startServer(t, home, WithPaused())
	if got := pendingOrder(t, again.url); !reflect.DeepEqual(got, want) {
		t.Errorf("after a restart: %v, want %v", got, want)
	}
}
