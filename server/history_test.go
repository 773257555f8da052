package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// historyKeys GETs /history with query q and returns the ids in the order the
// answer lists them, and the answer's size.
func historyKeys(t testing.TB, base, q string) ([]string, int) {
	t.Helper()
	resp, err := http.Get(base + "/history" + q)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /history%s = %d %s", q, resp.StatusCode, body)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("GET /history%s: not an object: %.200s", q, body)
	}
	var ids []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("GET /history%s: %v", q, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("GET /history%s: entry %v: %v", q, k, err)
		}
		ids = append(ids, k.(string))
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("GET /history%s: unterminated: %v", q, err)
	}
	return ids, len(body)
}

// TestHistoryByteBound: entries whose stored size passes the byte bound push
// the oldest out, across a restart too; the newest stays even alone over it.
func TestHistoryByteBound(t *testing.T) {
	const bound = 1 << 20
	home := newHome(t)
	ts := startServer(t, home, WithHistoryBytes(bound))
	pad := strings.Repeat("p", 200<<10) // each entry carries its extra_data
	run := func(ts *testServer, n int) []string {
		var ids []string
		for range n {
			id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(1, 0, false), "extra_data": map[string]any{"pad": pad}})
			waitHistory(t, ts.url, id)
			ids = append(ids, id)
		}
		return ids
	}
	ids := run(ts, 8)
	got, size := historyKeys(t, ts.url, "")
	if size > bound+64<<10 || len(got) < 3 {
		t.Fatalf("history of %d bytes with %d entries, bound %d", size, len(got), bound)
	}
	if want := ids[len(ids)-len(got):]; !reflect.DeepEqual(got, want) {
		t.Fatalf("history = %v, want the newest %d of %v, oldest first", got, len(got), ids)
	}
	ts.stop()

	ts = startServer(t, home, WithHistoryBytes(bound))
	ids = append(ids, run(ts, 4)...)
	got, size = historyKeys(t, ts.url, "")
	if size > bound+64<<10 || !reflect.DeepEqual(got, ids[len(ids)-len(got):]) {
		t.Fatalf("after a restart: %d bytes, %v of %v", size, got, ids)
	}

	huge := submit(t, ts.url, map[string]any{"prompt": slowPrompt(1, 0, false), "extra_data": map[string]any{"pad": strings.Repeat("h", 2*bound)}})
	waitHistory(t, ts.url, huge)
	if got, _ := historyKeys(t, ts.url, ""); !reflect.DeepEqual(got, []string{huge}) {
		t.Fatalf("after an entry over the bound: %v, want only it", got)
	}
}

// TestHistoryPaging: GET /history over more entries than one batch, with
// ComfyUI's max_items and offset.
func TestHistoryPaging(t *testing.T) {
	home := newHome(t)
	const n = 300
	makeDB(t, home, n, 0)
	ts := startServer(t, home)
	var all []string
	for i := range n {
		all = append(all, fmt.Sprintf("hist-%02d", i))
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"", all},
		{"?max_items=5", all[n-5:]},
		{"?max_items=1000", all},
		{"?max_items=0", nil},
		{"?offset=10&max_items=3", all[10:13]},
		{"?offset=290", all[290:]},
		{"?offset=0&max_items=260", all[:260]},
		{"?offset=500", nil},
	} {
		if got, _ := historyKeys(t, ts.url, tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GET /history%s = %d entries %.80v, want %d %.80v", tc.q, len(got), got, len(tc.want), tc.want)
		}
	}
	for _, q := range []string{"?max_items=-1", "?offset=x"} {
		if code, _ := call(t, "GET", ts.url+"/history"+q, nil); code != 400 {
			t.Errorf("GET /history%s = %d, want 400", q, code)
		}
	}
}

func TestQueueOrderDeleteClear(t *testing.T) {
	ts := startServer(t, newHome(t), WithPaused())
	var ids []string
	for i := range 4 {
		body := map[string]any{"prompt": slowPrompt(1, 0, false), "extra_data": map[string]any{"i": i}}
		if i == 3 {
			body["front"] = true
		}
		ids = append(ids, submit(t, ts.url, body))
	}
	pendingIDs := func() []string {
		code, out := call(t, "GET", ts.url+"/queue", nil)
		if code != 200 {
			t.Fatalf("GET /queue: %d", code)
		}
		if len(out["queue_running"].([]any)) != 0 {
			t.Fatalf("paused server runs something: %v", out)
		}
		var got []string
		for _, it := range out["queue_pending"].([]any) {
			item := it.([]any)
			if len(item) != 5 {
				t.Fatalf("queue item %v is not [number, id, prompt, extra_data, outputs]", item)
			}
			got = append(got, item[1].(string))
		}
		return got
	}
	if got, want := pendingIDs(), []string{ids[3], ids[0], ids[1], ids[2]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pending = %v, want %v (front first)", got, want)
	}
	if code, _ := call(t, "POST", ts.url+"/queue", map[string]any{"delete": []string{ids[1], "no-such-id"}}); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if got, want := pendingIDs(), []string{ids[3], ids[0], ids[2]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete pending = %v, want %v", got, want)
	}
	if code, _ := call(t, "POST", ts.url+"/queue", `{"delete": "x"}`); code != 400 {
		t.Errorf("malformed delete = %d, want 400", code)
	}
	if code, _ := call(t, "POST", ts.url+"/queue", map[string]any{"clear": true}); code != 200 {
		t.Fatalf("clear: %d", code)
	}
	if got := pendingIDs(); len(got) != 0 {
		t.Fatalf("after clear pending = %v", got)
	}
	if code, out := call(t, "GET", ts.url+"/prompt", nil); code != 200 || out["exec_info"].(map[string]any)["queue_remaining"] != 0.0 {
		t.Errorf("GET /prompt = %d %v", code, out)
	}
}

// TestRestart: prompts queued on a server that stopped before running them run
// on the next server over the same HOME; the history survives too.
func TestRestart(t *testing.T) {
	home := newHome(t)
	first := startServer(t, home)
	done := submit(t, first.url, map[string]any{"prompt": slowPrompt(1, 0, false)})
	waitHistory(t, first.url, done)
	first.stop()

	paused := startServer(t, home, WithPaused())
	var ids []string
	for range 3 {
		ids = append(ids, submit(t, paused.url, map[string]any{"prompt": slowPrompt(1, 0, false)}))
	}
	paused.stop()

	second := startServer(t, home)
	for _, id := range ids {
		if st := waitHistory(t, second.url, id)["status"].(map[string]any); st["status_str"] != "success" {
			t.Errorf("prompt %s: %v", id, st)
		}
	}
	h := waitHistory(t, second.url, done)
	if len(h["outputs"].(map[string]any)) != 1 {
		t.Errorf("history before the restart lost its outputs: %v", h)
	}
	_, all := call(t, "GET", second.url+"/history", nil)
	if len(all) != 4 {
		t.Errorf("history has %d entries, want 4", len(all))
	}
}

// TestRestartMidRun: the prompt running when the server stops runs again.
func TestRestartMidRun(t *testing.T) {
	home := newHome(t)
	first := startServer(t, home)
	ws := dialWS(t, first.url, "?clientId=r")
	id := submit(t, first.url, map[string]any{"prompt": slowPrompt(1000, 20, false), "client_id": "r"})
	readUntil(t, ws, 10*time.Second, func(m wsMsg) bool { return m.Type == "progress" })
	first.stop()
	second := startServer(t, home, WithPaused())
	code, out := call(t, "GET", second.url+"/queue", nil)
	pending := out["queue_pending"].([]any)
	if code != 200 || len(pending) != 1 || pending[0].([]any)[1] != id {
		t.Fatalf("after restart queue = %v", out)
	}
}

func TestHistoryRoutes(t *testing.T) {
	ts := startServer(t, newHome(t), WithMaxHistory(3))
	var ids []string
	for range 4 {
		id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(1, 0, false)})
		waitHistory(t, ts.url, id)
		ids = append(ids, id)
	}
	keys := func(q string) []string {
		code, out := call(t, "GET", ts.url+"/history"+q, nil)
		if code != 200 {
			t.Fatalf("GET /history%s = %d", q, code)
		}
		var ks []string
		for k := range out {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	sorted := func(s ...string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	if got := keys(""); !reflect.DeepEqual(got, sorted(ids[1:]...)) {
		t.Errorf("history = %v, want the newest 3 of %v", got, ids)
	}
	if got := keys("?max_items=1"); !reflect.DeepEqual(got, []string{ids[3]}) {
		t.Errorf("max_items=1 gives %v", got)
	}
	if code, _ := call(t, "GET", ts.url+"/history?max_items=x", nil); code != 400 {
		t.Errorf("bad max_items = %d", code)
	}
	if code, out := call(t, "GET", ts.url+"/history/unknown-id", nil); code != 200 || len(out) != 0 {
		t.Errorf("unknown id: %d %v, want 200 {} as ComfyUI", code, out)
	}
	call(t, "POST", ts.url+"/history", map[string]any{"delete": []string{ids[2]}})
	if got := keys(""); !reflect.DeepEqual(got, sorted(ids[1], ids[3])) {
		t.Errorf("after delete %v", got)
	}
	for _, bad := range []string{`{`, `{}`, `{"delete": 5}`} {
		if code, _ := call(t, "POST", ts.url+"/history", bad); code != 400 {
			t.Errorf("POST /history %s = %d, want 400", bad, code)
		}
	}
	call(t, "POST", ts.url+"/history", map[string]any{"clear": true})
	if got := keys(""); len(got) != 0 {
		t.Errorf("after clear %v", got)
	}
}
