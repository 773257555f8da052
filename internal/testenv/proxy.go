package testenv

import (
	"net"
	"sync"
	"testing"
	"time"
)

// LinkProxy forwards TCP connections to a server (NATS, say), delaying every
// chunk in each direction: a slow link between two machines, which a test
// can also cut (every connection closed, new ones refused) and restore.
type LinkProxy struct {
	Addr string // where clients connect instead of the server
	mu   sync.Mutex
	down bool
	open map[net.Conn]bool
}

// NewLinkProxy forwards to target with d of latency each way (0: none),
// until the test ends.
func NewLinkProxy(t testing.TB, target string, d time.Duration) *LinkProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &LinkProxy{Addr: ln.Addr().String(), open: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.Cut(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.open[in], p.open[out] = true, true
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); delayCopy(out, in, d) }()
			go func() { defer wg.Done(); delayCopy(in, out, d) }()
		}
	}()
	return p
}

// Cut closes every connection through the proxy and refuses new ones, as a
// cable pulled out would (but at once, not after TCP's timeouts).
func (p *LinkProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.open {
		c.Close()
	}
	clear(p.open)
}

// Restore lets new connections through again.
func (p *LinkProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// delayCopy copies src to dst, each chunk arriving d after it was read
// (latency, not a bandwidth limit: chunks are in flight together).
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(d), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}
