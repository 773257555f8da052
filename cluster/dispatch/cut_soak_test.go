//go:build soak

package dispatch_test

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSoakCutOffSideEffectStops: a worker cut off from NATS while it runs a
// node with side effects stops it once other workers count it dead, long
// before its ack wait, so that the file is written once, by the worker that
// takes the job over. (Long: the job comes back only after the ack wait.)
func TestSoakCutOffSideEffectStops(t *testing.T) {
	r := newRig(t, rigOptions{noLocal: true})
	link := newCutProxy(t, strings.TrimPrefix(r.nats.URL(), "nats://"))
	const wait = 30 * time.Second // far beyond cluster.BeatAge
	cut := r.addWorkerSpec("cut", workerSpec{url: "nats://" + link.addr, ackWait: wait}, 1)
	_, done, first := r.startRun(`{"version":1,"nodes":[{"id":"save","type":"WriteTextSlow","inputs":{"value":9,"prefix":"cutoff","ms":15000}}]}`, "save")
	if on := first(); on != "cut" {
		t.Fatalf("the node runs on %q", on)
	}
	spare := r.addWorkerSpec("spare", workerSpec{ackWait: wait}, 1)
	link.cut()
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

// cutProxy forwards TCP connections until cut, then closes them and
// refuses new ones.
type cutProxy struct {
	addr string
	mu   sync.Mutex
	down bool
	open []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			out, err := net.Dial("tcp", target)
			if down || err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.open = append(p.open, in, out)
			p.mu.Unlock()
			go pipe(in, out)
			go pipe(out, in)
		}
	}()
	return p
}

func pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}
