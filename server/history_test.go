package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
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
