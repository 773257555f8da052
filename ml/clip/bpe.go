package clip

import (
	"container/heap"
	"sync"
)

type pairKey struct{ a, b int32 }

type pairVal struct {
	rank   int32 // position in the merges list; lower merges first
	merged int32 // id of the merged symbol
}

// bpeWord turns one pre-tokenised piece (raw UTF-8 bytes) into vocabulary
// ids. The result is appended to dst.
//
// The reference repeatedly picks the adjacent pair with the lowest rank and
// merges every occurrence of it, left to right and without overlap, before
// looking again. A plain rescan is quadratic in the piece length, which lets
// one long run of letters stall a request, so this keeps the symbols in a
// linked list and the candidate pairs in a heap, and processes one rank at a
// time in left-to-right order: the same result in O(n log n).
func (t *Tokenizer) bpeWord(dst []int, piece string) []int {
	n := len(piece)
	if n == 0 {
		return dst
	}
	if n == 1 {
		return append(dst, t.byteEndID[piece[0]])
	}
	syms := make([]bpeSym, n)
	for i := 0; i < n; i++ {
		syms[i] = bpeSym{id: int32(t.byteID[piece[i]]), prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[n-1].id = int32(t.byteEndID[piece[n-1]])
	syms[n-1].next = -1

	h := make(pairHeap, 0, n)
	for i := int32(0); i < int32(n-1); i++ {
		t.pushPair(&h, syms, i)
	}

	var round []bpeCand
	for h.Len() > 0 {
		// Collect every candidate of the lowest rank; ranks are unique per
		// pair, so these are all occurrences of one bigram. A merge never
		// creates another occurrence of the bigram being merged (the merged
		// symbol is longer than either half), so the round is complete.
		r := h[0].rank
		round = round[:0]
		for h.Len() > 0 && h[0].rank == r {
			round = append(round, heap.Pop(&h).(bpeCand))
		}
		sortByLeft(round)
		for _, c := range round {
			l := c.left
			rgt := syms[l].next
			// Skip candidates made stale by an earlier merge: a consumed
			// symbol, or one whose neighbour has changed.
			if syms[l].dead || rgt < 0 || syms[l].id != c.a || syms[rgt].id != c.b {
				continue
			}
			syms[l].id = c.merged
			syms[rgt].dead = true
			syms[l].next = syms[rgt].next
			if nx := syms[rgt].next; nx >= 0 {
				syms[nx].prev = l
			}
			if p := syms[l].prev; p >= 0 {
				t.pushPair(&h, syms, p)
			}
			t.pushPair(&h, syms, l)
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, int(syms[i].id))
	}
	return dst
}

func (t *Tokenizer) pushPair(h *pairHeap, syms []bpeSym, left int32) {
	right := syms[left].next
	if right < 0 {
		return
	}
	if v, ok := t.ranks[pairKey{syms[left].id, syms[right].id}]; ok {
		heap.Push(h, bpeCand{rank: v.rank, left: left, a: syms[left].id, b: syms[right].id, merged: v.merged})
	}
}

type bpeSym struct {
	id         int32
	prev, next int32 // -1 at the ends
	dead       bool
}

type bpeCand struct {
	rank, left, a, b, merged int32
}

// sortByLeft orders one round's candidates by position. Rounds are tiny, so
// insertion sort beats sort.Slice and allocates nothing.
func sortByLeft(c []bpeCand) {
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j].left < c[j-1].left; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

type pairHeap []bpeCand

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].left < h[j].left
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(bpeCand)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// wordCacheSize bounds the per-word cache. Prompts reuse a small working set
// of words; the bound keeps a long-running server that tokenises arbitrary
// user text from growing without limit.
const wordCacheSize = 1 << 14

// wordCache maps a pre-tokenised piece to its ids. It is safe for concurrent
// use; when full it is emptied rather than tracking recency, which costs one
// re-warm per 16k distinct words and keeps lookups cheap.
type wordCache struct {
	mu  sync.RWMutex
	m   map[string][]int
	max int
}

func newWordCache(max int) *wordCache {
	return &wordCache{m: make(map[string][]int), max: max}
}

func (c *wordCache) get(k string) ([]int, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(k string, v []int) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}
