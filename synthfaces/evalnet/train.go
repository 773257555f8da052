package evalnet

import (
	"math/rand/v2"
	"runtime"
	"sync"
)

// shards is the fixed number of gradient buffers a batch is split into.
// Each buffer accumulates its examples in order and the buffers are summed
// in order, so a training run gives the same bytes with any number of
// cores (the shipped weights are checked against a rebuild).
const shards = 4

// newRand is the deterministic generator of (seed, stream, index).
func newRand(seed uint64, xs ...uint64) *rand.Rand {
	h := seed
	for _, x := range xs {
		h = splitmix(h ^ splitmix(x+0x9e3779b97f4a7c15))
	}
	return rand.New(rand.NewPCG(h, splitmix(h)))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// parallel runs fn(i) for i < n on GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for k := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += w {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// shardGrads are per-shard gradient buffers of a network and extra
// parameter slices (the text table).
type shardGrads struct {
	nets  [shards]*cnn
	extra [shards][][]float32
	sc    [shards]scratch
}

func newShardGrads(n *cnn, extra [][]float32) *shardGrads {
	g := &shardGrads{}
	for s := range shards {
		g.nets[s] = n.zeroLike()
		for _, e := range extra {
			g.extra[s] = append(g.extra[s], make([]float32, len(e)))
		}
	}
	return g
}

// sum adds the shards in order into shard 0 and returns its parameter list
// (network then extra), zeroing the others.
func (g *shardGrads) sum() [][]float32 {
	dst := append(g.nets[0].params(), g.extra[0]...)
	for s := 1; s < shards; s++ {
		src := append(g.nets[s].params(), g.extra[s]...)
		for i := range dst {
			axpy(dst[i], src[i], 1)
			clear(src[i])
		}
	}
	return dst
}

func (g *shardGrads) zero() {
	for s := range shards {
		for _, p := range append(g.nets[s].params(), g.extra[s]...) {
			clear(p)
		}
	}
}

// lrAt is a linear warm-up over the first 5% of steps, then a cosine-free
// linear decay to 10%.
func lrAt(step, total int) float64 {
	w := max(1, total/20)
	if step < w {
		return float64(step+1) / float64(w)
	}
	return 1 - 0.9*float64(step-w)/float64(max(1, total-w))
}
