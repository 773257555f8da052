//go:build soak

package dispatch_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/internal/testenv"
)

// TestSoakCutOffSideEffectStops: a worker cut off from NATS while it runs a
// node with side effects stops it once other workers count it dead, long
// before its ack wait, so that the file is written once, by the worker that
// takes the job over. (Long: the job comes back only after the ack wait.)
func TestSoakCutOffSideEffectStops(t *testing.T) {
	r := newRig(t, rigOptions{noLocal: true})
	link := testenv.NewLinkProxy(t, strings.TrimPrefix(r.nats.URL(), "nats://"), 0)
	const wait = 30 * time.Second // far beyond cluster.BeatAge
	cut := r.addWorkerSpec("cut", workerSpec{url: "nats://" + link.Addr, ackWait: wait}, 1)
	_, done, first := r.startRun(`{"version":1,"nodes":[{"id":"save","type":"WriteTextSlow","inputs":{"value":9,"prefix":"cutoff","ms":15000}}]}`, "save")
	if on := first(); on != "cut" {
		t.Fatalf("the node runs on %q", on)
	}
	spare := r.addWorkerSpec("spare", workerSpec{ackWait: wait}, 1)
	link.Cut()
	select {
	case end := <-done:
		if end.err != nil {
			t.Fatal(end.err)
		}
	case <-time.After(3 * time.Minute): // a hang guard
		t.Fatal("the node never finished")
	}
	// Gone for good: a node it finished while cut off no longer waits to
	// deliver its result.
	cut.die()
	var files []string
	for _, w := range []*testWorker{cut, spare} {
		m, _ := filepath.Glob(filepath.Join(w.out, "cutoff*"))
		files = append(files, m...)
	}
	if len(files) != 1 {
		t.Errorf("files written: %v, want one (by spare)", files)
	}
	if s := cut.w.Stats(); s.Dropped != 1 {
		t.Errorf("the cut worker's stats: %+v, want its node dropped", s)
	}
}
