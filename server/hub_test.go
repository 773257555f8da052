package server

import (
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func tf(name string, lossy bool) *frame { return &frame{lossy: lossy, raw: []byte(name)} }

func names(fs []*frame) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, string(f.raw))
	}
	return out
}

func TestOutbox(t *testing.T) {
	for _, tc := range []struct {
		name          string
		maxLossy      int
		maxMust       int
		push          []string // "m:x" must, "l:x" lossy
		want          []string
		wantDropped   int64
		wantOverflow  bool
		wantPushFails int
	}{
		{"order kept", 4, 4, []string{"m:a", "l:b", "m:c", "l:d"}, []string{"a", "b", "c", "d"}, 0, false, 0},
		{"oldest lossy dropped", 2, 10, []string{"l:p1", "m:x", "l:p2", "l:p3", "m:y", "l:p4"}, []string{"x", "p3", "y", "p4"}, 2, false, 0},
		{"must never dropped for lossy", 1, 10, []string{"m:a", "m:b", "l:1", "l:2", "l:3", "m:c"}, []string{"a", "b", "3", "c"}, 2, false, 0},
		{"must overflow disconnects", 8, 2, []string{"m:a", "m:b", "m:c", "l:d"}, []string{"a", "b"}, 0, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newOutbox(tc.maxLossy, tc.maxMust)
			fails := 0
			for _, p := range tc.push {
				if !q.push(tf(p[2:], p[0] == 'l')) {
					fails++
				}
			}
			got, overflow := q.take()
			if !reflect.DeepEqual(names(got), tc.want) || overflow != tc.wantOverflow || q.dropped.Load() != tc.wantDropped || fails != tc.wantPushFails {
				t.Fatalf("got %v overflow %v dropped %d fails %d; want %v %v %d %d",
					names(got), overflow, q.dropped.Load(), fails, tc.want, tc.wantOverflow, tc.wantDropped, tc.wantPushFails)
			}
		})
	}
	// take empties the box; the bounds apply to what waits again.
	q := newOutbox(1, 1)
	q.push(tf("a", false))
	q.take()
	if !q.push(tf("b", false)) {
		t.Fatal("push after take failed: the must bound counts taken frames")
	}
	if got, _ := q.take(); !reflect.DeepEqual(names(got), []string{"b"}) {
		t.Fatalf("got %v", names(got))
	}
}

// TestPublishNeverBlocks: a client that reads nothing costs the publisher a
// bounded, constant amount; its must-deliver frames all wait for it.
func TestPublishNeverBlocks(t *testing.T) {
	h := newHub()
	stuck := &client{sid: "s", out: newOutbox(64, 1<<20), done: make(chan struct{})}
	h.add(stuck)
	// The client never reads: a send that waited for it would wait forever,
	// so finishing at all is the proof. The limit only guards against that
	// hang; how fast the loop runs depends on the machine and -race.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200000 {
			h.send("", tf(fmt.Sprint("p", i), true))
			if i%1000 == 0 {
				h.send("s", tf(fmt.Sprint("m", i), false))
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("publishing to a client that reads nothing blocked")
	}
	got, _ := stuck.out.take()
	must, lossy := 0, 0
	for _, f := range got {
		if f.lossy {
			lossy++
		} else {
			must++
		}
	}
	if must != 200 || lossy > 64 {
		t.Fatalf("must %d (want 200), lossy %d (want <= 64)", must, lossy)
	}
}

// TestSlowClientDoesNotStallOthers: a client that never reads is in the hub
// while a prompt runs; the run and the other client are unaffected, and the
// stuck client's queue holds every must-deliver message.
func TestSlowClientDoesNotStallOthers(t *testing.T) {
	// The reading client's queue holds every lossy frame of this run (80
	// progress and preview frames), so counting them below measures delivery,
	// not whether its writer kept up with a burst (the default drops the
	// oldest beyond 64, by design).
	ts := startServer(t, newHome(t), WithClientBuffers(256, 4096))
	stuck := &client{sid: "x", out: newOutbox(4, 1000), done: make(chan struct{})}
	ts.hub.add(stuck)
	defer ts.hub.remove(stuck)
	fast := dialWS(t, ts.url, "?clientId=x")
	id := submit(t, ts.url, map[string]any{"prompt": slowPrompt(40, 1, true), "client_id": "x"})
	// The stuck client never reads, so a hub that waited for it would never
	// finish the run: reaching the end is the proof. The limit only guards
	// against a hang; a busy machine makes the run slower, not wrong.
	msgs := readUntil(t, fast, 2*time.Minute, finished(id))
	var fastMust []string
	progress := 0
	for _, m := range msgs {
		switch m.Type {
		case "progress":
			progress++
		case "binary", "status":
		default:
			fastMust = append(fastMust, m.Type)
		}
	}
	if progress != 40 {
		t.Errorf("the reading client got %d of 40 progress messages", progress)
	}
	got, _ := stuck.out.take()
	var stuckMust []string
	lossy := 0
	for _, f := range got {
		if f.lossy {
			lossy++
			continue
		}
		var m wsMsg
		if err := jsonUnmarshal(f.raw, &m); err == nil && m.Type != "status" {
			stuckMust = append(stuckMust, m.Type)
		}
	}
	if !reflect.DeepEqual(stuckMust, fastMust) {
		t.Errorf("stuck client's must-deliver messages %v, want %v", stuckMust, fastMust)
	}
	if lossy > 4 {
		t.Errorf("stuck client holds %d lossy frames, bound is 4", lossy)
	}
}

// TestFanout200 connects 200 websocket clients without a clientId; a prompt
// without client_id is broadcast, and every client must receive every message,
// in the same order.
func TestFanout200(t *testing.T) {
	ts := startServer(t, newHome(t))
	res := fanout(t, ts, 200, slowPrompt(5, 2, true))
	ref := res.types[0]
	for i, got := range res.types {
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("client %d got %v\nclient 0 got %v", i, got, ref)
		}
	}
	count := map[string]int{}
	for _, ty := range ref {
		count[ty]++
	}
	for ty, n := range map[string]int{"execution_start": 1, "execution_cached": 1, "executing": 2, "progress": 5, "binary": 5, "executed": 1, "execution_success": 1} {
		if count[ty] != n {
			t.Errorf("%d %s messages, want %d (%v)", count[ty], ty, n, ref)
		}
	}
	t.Logf("200 clients: submit→all finished %v; last message spread (first to last client) %v", res.total, res.finalSpread)
}

type fanoutResult struct {
	types       [][]string
	total       time.Duration // POST /prompt until every client saw executing null
	finalSpread time.Duration // first to last client receiving executing null
	startDelay  time.Duration // POST until the first client saw execution_start
}

func fanout(t testing.TB, ts *testServer, n int, prompt map[string]any) fanoutResult {
	t.Helper()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dialWS(t, ts.url, "")
		readUntil(t, conns[i], 5*time.Second, func(m wsMsg) bool { return m.Type == "status" })
	}
	for ts.hub.count() < n {
		time.Sleep(time.Millisecond)
	}
	res := fanoutResult{types: make([][]string, n)}
	ends := make([]time.Time, n)
	starts := make([]time.Time, n)
	idc := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ""
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				kind, b, err := c.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("client %d: %v", i, err)
					return
				}
				if kind == websocket.BinaryMessage {
					res.types[i] = append(res.types[i], "binary")
					continue
				}
				var m wsMsg
				if err := jsonUnmarshal(b, &m); err != nil {
					errs <- err
					return
				}
				if m.Type == "status" {
					continue // queue status broadcasts may interleave differently with the POST
				}
				res.types[i] = append(res.types[i], m.Type)
				if m.Type == "execution_start" {
					starts[i] = time.Now()
				}
				if m.Type == "executing" && m.Data["node"] == nil {
					if id == "" {
						id = <-idc
					}
					if m.Data["prompt_id"] == id {
						ends[i] = time.Now()
						return
					}
				}
			}
		}()
	}
	begin := time.Now()
	id := submit(t, ts.url, map[string]any{"prompt": prompt})
	go func() {
		for range n {
			idc <- id
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Slice(ends, func(a, b int) bool { return ends[a].Before(ends[b]) })
	sort.Slice(starts, func(a, b int) bool { return starts[a].Before(starts[b]) })
	res.total = ends[n-1].Sub(begin)
	res.finalSpread = ends[n-1].Sub(ends[0])
	res.startDelay = starts[0].Sub(begin)
	for _, c := range conns {
		c.Close()
	}
	return res
}
