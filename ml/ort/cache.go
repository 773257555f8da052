package ort

import (
	"container/list"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/face0/face0/ml/onnx"
)

// DefaultMemoryFactor approximates a session's memory from its weight bytes:
// onnxruntime keeps the weights (pre-packed for some kernels, which copies
// them) plus arenas for activations, so a CPU session typically holds 1.5-2x
// the file size.
const DefaultMemoryFactor = 1.5

// Cache keeps sessions loaded and warm within a memory budget: each model is
// loaded once per (path, options), concurrent requests for the same model
// wait for one load, and when the estimated total passes the budget the
// least recently used idle sessions are closed.
//
// A session is estimated as (model file + external data) × factor. Sessions
// in use (acquired and not yet released) are never closed, so a single model
// larger than the budget still loads and the budget may be exceeded while it
// is in use; it is evicted once released if it still does not fit.
type Cache struct {
	budget int64
	factor float64

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     *list.List // of *cacheEntry, front = most recently used
	used    int64
}

type cacheEntry struct {
	key   string
	ready chan struct{} // closed when the load finished
	sess  *Session
	err   error
	cost  int64
	refs  int
	elem  *list.Element // nil while loading or after eviction
}

// NewCache makes a cache holding up to budget bytes of estimated session
// memory; factor ≤ 0 means DefaultMemoryFactor.
func NewCache(budget int64, factor float64) *Cache {
	if factor <= 0 {
		factor = DefaultMemoryFactor
	}
	return &Cache{budget: budget, factor: factor, entries: map[string]*cacheEntry{}, lru: list.New()}
}

var (
	sharedOnce  sync.Once
	sharedCache *Cache
)

// SharedCacheEnv sets the process cache's budget in MiB (default 8192).
const SharedCacheEnv = "FACE0_ORT_CACHE_MB"

// Shared is the process-wide cache that node plugins use, so that every node
// in one plugin process shares one copy of each model.
func Shared() *Cache {
	sharedOnce.Do(func() {
		mb := int64(8192)
		if v, err := strconv.ParseInt(os.Getenv(SharedCacheEnv), 10, 64); err == nil && v > 0 {
			mb = v
		}
		sharedCache = NewCache(mb<<20, 0)
	})
	return sharedCache
}

// Acquire returns the session for path with opts, loading it if needed. Call
// release when done with it (it may be evicted afterwards); the session must
// not be used after release.
func (c *Cache) Acquire(path string, opts Options) (s *Session, release func(), err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	key := abs + "\x00" + opts.key()

	c.mu.Lock()
	e, ok := c.entries[key]
	if !ok {
		e = &cacheEntry{key: key, ready: make(chan struct{})}
		c.entries[key] = e
	}
	e.refs++
	c.mu.Unlock()

	if !ok {
		e.sess, e.err = Load(path, opts)
		if e.err == nil {
			e.cost = c.estimate(e.sess.Info())
		}
		c.mu.Lock()
		if e.err != nil {
			// Failed loads are not cached: the file may be fixed and retried.
			delete(c.entries, key)
		} else {
			e.elem = c.lru.PushFront(e)
			c.used += e.cost
		}
		close(e.ready)
		c.mu.Unlock()
	} else {
		<-e.ready
	}
	if e.err != nil {
		c.mu.Lock()
		e.refs--
		c.mu.Unlock()
		return nil, nil, e.err
	}

	c.mu.Lock()
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	c.evictLocked()
	c.mu.Unlock()

	var once sync.Once
	release = func() {
		once.Do(func() {
			c.mu.Lock()
			e.refs--
			c.evictLocked()
			c.mu.Unlock()
		})
	}
	return e.sess, release, nil
}

func (c *Cache) estimate(info *onnx.ModelInfo) int64 {
	return int64(float64(info.FileBytes+info.ExternalBytes) * c.factor)
}

// evictLocked closes idle sessions, least recently used first, until the
// estimate fits the budget.
func (c *Cache) evictLocked() {
	for el := c.lru.Back(); el != nil && c.used > c.budget; {
		prev := el.Prev()
		e := el.Value.(*cacheEntry)
		if e.refs == 0 {
			c.removeLocked(e)
		}
		el = prev
	}
}

func (c *Cache) removeLocked(e *cacheEntry) {
	c.lru.Remove(e.elem)
	e.elem = nil
	c.used -= e.cost
	delete(c.entries, e.key)
	// Close waits for in-flight Runs, but refs==0 means there are none.
	e.sess.Close()
}

// Stats reports the loaded sessions and their estimated bytes.
func (c *Cache) Stats() (sessions int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.used
}

// Loaded lists the model paths currently loaded, most recently used first.
func (c *Cache) Loaded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for el := c.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*cacheEntry).sess.Path())
	}
	return out
}

// Close closes every idle session; sessions still in use are closed when
// released.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget = 0
	c.evictLocked()
}
