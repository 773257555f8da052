package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/face0/face0/internal/testenv"
)

// dbFixture is a server.db written by the store itself: history entries whose
// outputs are each over a kilobyte (so that the history spans several pages)
// and queued prompts.
type dbFixture struct {
	path    string
	history map[string]any // id -> entry, as the API returns it
	queued  []string
}

func makeDB(t testing.TB, home string, nHist, nQueue int) *dbFixture {
	t.Helper()
	fx := &dbFixture{path: filepath.Join(home, "server.db"), history: map[string]any{}}
	st, err := openStore(fx.path, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.db.NoSync = true // a fixture: nothing to survive
	for i := range nHist {
		id := fmt.Sprintf("hist-%02d", i)
		p := &queuedPrompt{ID: id, Prompt: json.RawMessage(`{"version":1,"nodes":[]}`), Queued: time.Now()}
		if err := st.enqueue(p, nil, false); err != nil {
			t.Fatal(err)
		}
		entry := map[string]any{
			"prompt":  p.item(),
			"outputs": map[string]any{"n": map[string]any{"text": []any{strings.Repeat("x", 1500) + id}}},
			"status":  map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
			"meta":    map[string]any{},
		}
		if err := st.finish(id, entry); err != nil {
			t.Fatal(err)
		}
		var back any // as a client decodes it
		b, _ := json.Marshal(entry)
		_ = json.Unmarshal(b, &back)
		fx.history[id] = back
	}
	for i := range nQueue {
		id := fmt.Sprintf("queued-%02d", i)
		// A node no build has: the prompt fails (into the history) when run.
		p := &queuedPrompt{ID: id, Prompt: json.RawMessage(`{"version":1,"nodes":[{"id":"a","type":"NoSuchNode"}]}`), Queued: time.Now()}
		if err := st.enqueue(p, nil, false); err != nil {
			t.Fatal(err)
		}
		fx.queued = append(fx.queued, id)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

// pageOf finds the first live page of the given bbolt type ("leaf",
// "branch", "freelist") whose bytes contain marker (any page when marker is
// nil), and returns its offset and size in the file.
func pageOf(t testing.TB, path, typ string, marker []byte) (off, size int64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(db.Info().PageSize)
	found := false
	_ = db.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id)*ps < tx.Size(); id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil || info.Type != typ {
				continue
			}
			off, size = int64(id)*ps, int64(1+info.OverflowCount)*ps
			if marker == nil || bytes.Contains(raw[off:off+size], marker) {
				found = true
				return nil
			}
		}
		return nil
	})
	if !found {
		t.Fatalf("no live %s page with %q in %s", typ, marker, path)
	}
	return off, size
}

func scribble(t testing.TB, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0xA5, 0x5A, 0xFF, 0x13}, int(n/4)+1)[:n]
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
}

func dbSize(t testing.TB, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// checkOutcome holds a server started over a damaged server.db to the rules:
// never a Go trace; either it refuses to start with a message naming the file
// and the remedy, or it serves, every entry it shows is one that was there,
// and if anything was lost it said so, naming the file and the copy it kept.
// It returns whether the server served and how many of the fixture's prompts
// it still knows.
func checkOutcome(t testing.TB, p *proc, fx *dbFixture) (served bool, kept int) {
	t.Helper()
	log := p.log()
	assertNoTrace(t, "start over a damaged server.db", log)
	if p.url == "" {
		if p.err == nil {
			t.Fatalf("the server exited with status 0 over a damaged database:\n%s", log)
		}
		if !strings.Contains(log, fx.path) || !strings.Contains(log, "mv ") {
			t.Fatalf("refusing to start, the message must name %s and the remedy:\n%s", fx.path, log)
		}
		return false, 0
	}
	known := map[string]bool{}
	_, q := call(t, "GET", p.url+"/queue", nil)
	for _, k := range []string{"queue_running", "queue_pending"} {
		items, _ := q[k].([]any)
		for _, it := range items {
			id := it.([]any)[1].(string)
			if !strings.HasPrefix(id, "queued-") {
				t.Errorf("queue holds %q, never queued", id)
			}
			known[id] = true
		}
	}
	code, h := call(t, "GET", p.url+"/history", nil)
	if code != 200 {
		t.Fatalf("GET /history = %d %v", code, h)
	}
	for id, e := range h {
		if want, ok := fx.history[id]; ok {
			if !reflect.DeepEqual(e, want) {
				t.Errorf("history entry %s came back different", id)
			}
		} else if !strings.HasPrefix(id, "queued-") {
			t.Errorf("history holds %q, never there", id)
		}
		known[id] = true
	}
	if len(known) < len(fx.history)+len(fx.queued) {
		copies, _ := filepath.Glob(fx.path + ".damaged-*")
		if !strings.Contains(log, "damaged") || !strings.Contains(log, fx.path) || len(copies) == 0 || !strings.Contains(log, copies[0]) {
			t.Fatalf("the server lost %d of %d prompts without saying so (copies %v):\n%s",
				len(fx.history)+len(fx.queued)-len(known), len(fx.history)+len(fx.queued), copies, log)
		}
	}
	return true, len(known)
}

// TestDamagedServerDB starts a real server over server.db files damaged the
// ways disks and crashes damage them.
func TestDamagedServerDB(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, fx *dbFixture)
		serves bool // false: it must refuse to start
		all    bool // nothing may be lost
	}{
		{"truncated in the middle", func(t *testing.T, fx *dbFixture) {
			if err := os.Truncate(fx.path, dbSize(t, fx.path)/2); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"truncated to nothing", func(t *testing.T, fx *dbFixture) {
			if err := os.Truncate(fx.path, 0); err != nil {
				t.Fatal(err)
			}
		}, false, false},
		{"garbage freelist page", func(t *testing.T, fx *dbFixture) {
			off, n := pageOf(t, fx.path, "freelist", nil)
			scribble(t, fx.path, off, n)
		}, true, true},
		{"garbage history page", func(t *testing.T, fx *dbFixture) {
			off, n := pageOf(t, fx.path, "leaf", []byte(`"entry"`))
			scribble(t, fx.path, off, n)
		}, true, false},
		{"garbage page header", func(t *testing.T, fx *dbFixture) {
			off, _ := pageOf(t, fx.path, "leaf", []byte(`"entry"`))
			scribble(t, fx.path, off, 16)
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := newHome(t)
			fx := makeDB(t, home, 12, 3)
			tc.damage(t, fx)
			p := startProc(t, home)
			t.Logf("stderr:\n%s", p.log())
			served, kept := checkOutcome(t, p, fx)
			if served != tc.serves {
				t.Fatalf("served = %v, want %v:\n%s", served, tc.serves, p.log())
			}
			if tc.all && kept != len(fx.history)+len(fx.queued) {
				t.Fatalf("kept %d of %d prompts; the damage held none:\n%s", kept, len(fx.history)+len(fx.queued), p.log())
			}
			if served {
				p.stop(t)
				// The next start finds a sound file and says nothing more.
				again := startProc(t, home)
				if again.url == "" || strings.Contains(again.log(), "damaged") {
					t.Fatalf("second start after the salvage:\n%s", again.log())
				}
				again.stop(t)
			}
		})
	}
}

// rot flips one byte inside the JSON of record key in bucket, keeping the
// seal: the bit rot a disk can do to a value, which bbolt does not see.
func rot(t testing.TB, db *bolt.DB, bucket []byte, key string) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := bytes.Clone(b.Get([]byte(key)))
		if len(v) < 40 {
			return fmt.Errorf("no record %s", key)
		}
		v[len(v)/2] ^= 0x04
		return b.Put([]byte(key), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUnreadableHistoryEntry: one history entry whose bytes were damaged
// leaves the rest of the history readable, whether the damage happens while
// the server runs or while it is stopped (then the start salvages the file
// and names the entry).
func TestUnreadableHistoryEntry(t *testing.T) {
	home := newHome(t)
	fx := makeDB(t, home, 5, 0)
	ts := startServer(t, home)
	rot(t, ts.store.db, bucketHistory, "hist-02")
	code, h := call(t, "GET", ts.url+"/history", nil)
	if code != 200 || len(h) != 4 || h["hist-02"] != nil {
		t.Fatalf("GET /history = %d with %d entries, want 200 with the 4 readable ones", code, len(h))
	}
	code, one := call(t, "GET", ts.url+"/history/hist-02", nil)
	if code != 500 || !strings.Contains(fmt.Sprint(one), "hist-02") {
		t.Fatalf("GET /history/hist-02 = %d %v, want a 500 naming the entry", code, one)
	}
	// It can be deleted, and then is gone for good.
	if code, out := call(t, "POST", ts.url+"/history", map[string]any{"delete": []string{"hist-02"}}); code != 200 {
		t.Fatalf("delete: %d %v", code, out)
	}
	if code, one := call(t, "GET", ts.url+"/history/hist-02", nil); code != 200 || len(one) != 0 {
		t.Fatalf("after delete: %d %v", code, one)
	}
	if code, h := call(t, "GET", ts.url+"/history?max_items=10", nil); code != 200 || len(h) != 4 {
		t.Fatalf("after delete: %d, %d entries", code, len(h))
	}

	rot(t, ts.store.db, bucketHistory, "hist-03")
	ts.stop()
	var log testenv.Buffer
	ts = startServer(t, home, WithLog(&log))
	if !strings.Contains(log.String(), `history "hist-03"`) || !strings.Contains(log.String(), fx.path+".damaged-") {
		t.Fatalf("the start does not report the damaged entry:\n%s", log.String())
	}
	if code, h := call(t, "GET", ts.url+"/history", nil); code != 200 || len(h) != 3 || h["hist-03"] != nil {
		t.Fatalf("after the salvage: %d, %d entries", code, len(h))
	}
}

// TestUnreadableQueuedPrompt: a queued record that no longer decodes does
// not keep the server from starting; it moves to the history as failed, with
// the reason, and the rest of the queue stays.
func TestUnreadableQueuedPrompt(t *testing.T) {
	home := newHome(t)
	fx := makeDB(t, home, 0, 2)
	db, err := bolt.Open(fx.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).Put([]byte("queued-00"), []byte(`{"number": 1, "id": "queued-00", "prompt": {"versi`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, home, WithPaused())
	h := waitHistory(t, ts.url, "queued-00")
	st := h["status"].(map[string]any)
	if st["status_str"] != "error" || !strings.Contains(fmt.Sprint(st["messages"]), "unreadable") {
		t.Fatalf("history of the unreadable prompt: %v", st)
	}
	_, q := call(t, "GET", ts.url+"/queue", nil)
	if p := q["queue_pending"].([]any); len(p) != 1 || p[0].([]any)[1] != "queued-01" {
		t.Fatalf("queue = %v, want queued-01 alone", q)
	}
}
