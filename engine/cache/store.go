package cache

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by operations on a Store after Close.
var ErrClosed = errors.New("cache: store is closed; Open it again to keep using the cache")

// Stats is a snapshot of the store. Entries, Blobs and Bytes describe what the
// store holds, including values accepted by Put and not yet written (these are
// counted before deduplication until the writer has hashed them); after
// Flush they describe exactly what is on disk. Hits, Misses, Evictions and
// Corrupt count events since Open.
type Stats struct {
	Entries      int   // entries
	Blobs        int   // distinct blob values
	Bytes        int64 // inline value bytes plus each distinct blob once
	MaxBytes     int64 // the cap; 0 means unlimited
	Pending      int   // entries accepted by Put and not yet durable
	PendingBytes int64 // their bytes, held in memory (bounded by WithMaxPending)
	Hits         int64
	Misses       int64
	Evictions    int64 // entries removed to stay under MaxBytes
	Corrupt      int64 // entries dropped because their data was missing, altered or in a damaged index
	Commits      int64 // index transactions the background writer committed
}

// EntryInfo describes one cached value without reading it.
type EntryInfo struct {
	Key        Key
	Size       int64
	Inline     bool // stored inside index.db rather than as a blob file
	Producer   string
	Created    time.Time
	LastAccess time.Time // includes accesses not yet flushed to disk
	Pending    bool      // accepted by Put, not yet durable
}

// entry is one cached value. The fields above the marker never change once
// the entry exists (a replacing Put creates a new entry).
type entry struct {
	key      Key
	blob     bool
	size     int64
	created  int64
	producer string

	// Guarded by Store.mu.
	digest   [32]byte // see digestOf; valid when hashed
	hashed   bool
	pending  bool   // not yet durable: val holds the value
	val      []byte // owned by the store from Put until durable
	inflight bool   // the writer's current batch reads val; keep it
	access   int64
	dirty    bool // access changed since it was last persisted
	elem     *list.Element
}

type blobRef struct {
	refs int64
	size int64
}

// Store is a durable content-addressed cache. See the package documentation
// for the on-disk layout and guarantees.
//
// The store keeps two views of the index. entries is what Get and Info
// answer from: every value Put, durable or not. disk is what index.db holds.
// Put changes only entries and marks the key dirty; the background writer
// (writer.go) turns the difference for dirty keys into one index transaction
// per batch, so no caller waits for a disk write.
//
// Locking, outermost first:
//   - closeMu is held shared by every public operation and exclusively by
//     Close, so Close waits for in-flight calls.
//   - batchMu is held by whoever writes index.db or blob files: the writer for
//     a whole batch, and Open while it repairs.
//   - mu guards everything else; it is held only briefly and never across
//     I/O, so Gets and Puts are not blocked by the writer's fsyncs.
type Store struct {
	dir     string
	blobDir string
	dbPath  string
	cfg     config

	closeMu sync.RWMutex
	closed  bool

	batchMu sync.Mutex

	mu   sync.Mutex
	cond *sync.Cond // on mu: a batch ended or pending bytes shrank
	idx  *index     // nil while a damaged index is being replaced

	entries   map[Key]*entry
	lru       *list.List // of *entry; front is most recently used
	memBlobs  map[[32]byte]*blobRef
	bytes     int64 // inline values and distinct hashed blobs in entries
	unhashed  int64 // bytes of blob entries whose digest is not known yet
	unhashedN int
	pendingN  int
	pendingB  int64
	waiters   int // Puts waiting for pending bytes to shrink (tests watch it)

	dirtyKeys map[Key]struct{} // keys where entries and disk may differ
	dirty     []*entry         // entries whose access time changed
	disk      map[Key]*entry
	diskBlobs map[[32]byte]*blobRef
	badBlobs  map[[32]byte]bool // blob files found damaged; rewrite before reuse
	damage    error             // a read found index.db damaged; the writer replaces it
	stamp     fileStamp         // index.db as the store last left it; guarded by batchMu
	pageSize  int               // index.db's page size; guarded by batchMu
	resets    int               // damaged indexes replaced since Open

	gen, doneGen uint64 // bumped by every change; the last one the writer finished
	failures     uint64 // failed batches
	lastErr      error
	writerDone   bool

	hits, misses, evictions, corrupt, commits atomic.Int64

	kick chan struct{} // wakes the writer; buffered, never blocks
	stop chan struct{}
	done chan struct{}
}

func newStore(dir string, cfg config) *Store {
	s := &Store{
		dir:     dir,
		blobDir: filepath.Join(dir, "blobs"),
		dbPath:  filepath.Join(dir, "index.db"),
		cfg:     cfg,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	s.clearLocked()
	return s
}

// clearLocked empties both views.
func (s *Store) clearLocked() {
	s.entries = map[Key]*entry{}
	s.lru = list.New()
	s.memBlobs = map[[32]byte]*blobRef{}
	s.bytes, s.unhashed, s.unhashedN = 0, 0, 0
	s.dirtyKeys = map[Key]struct{}{}
	s.dirty = nil
	s.disk = map[Key]*entry{}
	s.diskBlobs = map[[32]byte]*blobRef{}
	s.badBlobs = map[[32]byte]bool{}
}

// Get returns the value stored under k. A value that fails verification
// (a missing, truncated or altered blob, an altered inline value, a damaged
// index) is reported as a miss and dropped, never returned. Get does not
// write to the index; the access time is persisted later in a batch.
func (s *Store) Get(k Key) ([]byte, bool, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}

	s.mu.Lock()
	e := s.entries[k]
	if e == nil {
		s.mu.Unlock()
		s.misses.Add(1)
		return nil, false, nil
	}
	if e.pending {
		// Not on disk yet: the caller's own bytes, which Put took over.
		val := e.val
		s.touchLocked(e)
		s.mu.Unlock()
		s.hits.Add(1)
		return append(make([]byte, 0, len(val)), val...), true, nil
	}
	idx, damaged, digest := s.idx, s.damage != nil, e.digest
	s.mu.Unlock()
	if damaged || idx == nil {
		s.misses.Add(1) // the index is being replaced; its entries are gone
		return nil, false, nil
	}

	var (
		val []byte
		ok  bool
		err error
	)
	if e.blob {
		val, ok, err = s.readBlob(digest, e.size)
	} else {
		val, ok, err = s.readInline(idx, k, e.size, digest)
	}
	var dmg *damageError
	if errors.As(err, &dmg) {
		s.markDamaged(dmg)
		s.misses.Add(1)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if !ok {
		s.misses.Add(1)
		s.dropCorrupt(e)
		return nil, false, nil
	}

	s.mu.Lock()
	// The entry may have been replaced or evicted while we read; then its
	// recency no longer matters.
	if s.entries[k] == e {
		s.touchLocked(e)
	}
	s.mu.Unlock()
	s.hits.Add(1)
	return val, true, nil
}

// touchLocked records an access, to be persisted in a later batch.
func (s *Store) touchLocked(e *entry) {
	e.access = s.cfg.now().UnixNano()
	s.lru.MoveToFront(e.elem)
	if !e.dirty {
		e.dirty = true
		s.dirty = append(s.dirty, e)
		if len(s.dirty) >= flushThreshold {
			s.kickWriter()
		}
	}
}

// readBlob reads and verifies a blob. ok is false when the data is missing or
// does not match its name; err is reserved for failures that say nothing about
// the data (permissions, too many open files) and may be transient.
func (s *Store) readBlob(h [32]byte, size int64) (val []byte, ok bool, err error) {
	b, err := os.ReadFile(s.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache: reading blob %x: %w", h, err)
	}
	if int64(len(b)) != size || digestOf(true, b) != h {
		return nil, false, nil
	}
	return b, true, nil
}

// readInline reads and verifies an inline value. A fault or panic inside
// bbolt (a damaged or truncated index.db) comes back as a *damageError.
func (s *Store) readInline(idx *index, k Key, size int64, digest [32]byte) (val []byte, ok bool, err error) {
	err = idx.view("reading", func(tx *bolt.Tx) error {
		ib := tx.Bucket(bucketInline)
		if ib == nil {
			return nil
		}
		if v := ib.Get(k[:]); v != nil && int64(len(v)) == size {
			// bbolt's slice is only valid inside the transaction.
			val, ok = append(make([]byte, 0, len(v)), v...), true
		}
		return nil
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return nil, false, nil // replaced by a fresh index meanwhile
	}
	if err != nil {
		return nil, false, err
	}
	if ok && digestOf(false, val) != digest {
		return nil, false, nil
	}
	return val, ok, nil
}

// dropCorrupt removes bad, together with every durable entry sharing its
// blob: the file is bad for all of them. The blob is marked so that the
// writer rewrites it rather than deduplicating a later Put of the same
// content against the damaged copy.
func (s *Store) dropCorrupt(bad *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries[bad.key] != bad {
		// Evicted, deleted or replaced concurrently: the read failed because
		// the data went away legitimately, not because it was damaged.
		return
	}
	victims := []*entry{bad}
	if bad.blob {
		s.badBlobs[bad.digest] = true
		if b := s.memBlobs[bad.digest]; b != nil && b.refs > 1 {
			for _, e := range s.entries {
				if e != bad && e.blob && e.hashed && !e.pending && e.digest == bad.digest {
					victims = append(victims, e)
				}
			}
		}
	}
	for _, e := range victims {
		s.removeLocked(e)
	}
	s.corrupt.Add(int64(len(victims)))
	s.gen++
	s.kickWriter()
	what := "inline value"
	if bad.blob {
		what = "blob " + s.blobPath(bad.digest)
	}
	also := ""
	if n := len(victims) - 1; n > 0 {
		also = fmt.Sprintf(" and %d more entries sharing that data", n)
	}
	s.warn("cache: entry %s (from %s) failed verification: its %s is missing or altered; "+
		"dropped it%s, to be recomputed", bad.key, bad.producer, what, also)
}

// Put stores v under k, replacing any previous value, and returns without
// waiting for the disk: the value is visible to Get and Info at once and is
// made durable by the background writer (Flush and Close wait for it).
//
// Put takes ownership of v: the store keeps and reads v until it is durable,
// which may be well after Put returns, so the caller must not modify v
// afterwards. Pass a copy if v lives in memory that will be reused or unmapped.
//
// Caching is best effort: a value larger than the byte cap is not stored (any
// older value under k is removed) and Put returns nil; a value that cannot be
// written is dropped with a warning. When more than WithMaxPending bytes are
// waiting to be written, Put waits for the writer to catch up.
func (s *Store) Put(k Key, v []byte, producer string) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	size := int64(len(v))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.maxBytes > 0 && size > s.cfg.maxBytes {
		// Too big to cache. Drop any older value under k so Get never
		// returns something other than the latest Put.
		if old := s.entries[k]; old != nil {
			s.removeLocked(old)
			s.gen++
			s.kickWriter()
		}
		return nil
	}
	for s.pendingB > 0 && s.pendingB+size > s.cfg.maxPending && !s.writerDone {
		s.kickWriter()
		s.waiters++
		s.cond.Wait()
		s.waiters--
	}
	if old := s.entries[k]; old != nil {
		s.removeLocked(old)
	}
	now := s.cfg.now().UnixNano()
	e := &entry{
		key: k, blob: size > int64(s.cfg.inlineLimit), size: size, created: now, producer: producer,
		pending: true, val: v, access: now,
	}
	s.addLocked(e)
	s.pendingN++
	s.pendingB += size
	s.dirtyKeys[k] = struct{}{}
	s.gen++
	s.kickWriter()
	return nil
}

// addLocked makes e visible and counts it.
func (s *Store) addLocked(e *entry) {
	s.entries[e.key] = e
	e.elem = s.lru.PushFront(e)
	s.countLocked(e, 1)
}

// removeLocked hides e, uncounts it and marks its key for the writer. A
// pending value the writer is not reading is released at once.
func (s *Store) removeLocked(e *entry) {
	if s.entries[e.key] != e {
		return
	}
	delete(s.entries, e.key)
	s.lru.Remove(e.elem)
	e.elem = nil
	s.countLocked(e, -1)
	s.dirtyKeys[e.key] = struct{}{}
	if !e.inflight {
		s.releaseLocked(e)
	}
}

// releaseLocked drops e's pending value: it is durable, or no longer wanted.
func (s *Store) releaseLocked(e *entry) {
	if !e.pending {
		return
	}
	e.pending, e.val = false, nil
	s.pendingN--
	s.pendingB -= e.size
	s.cond.Broadcast()
}

// countLocked adds (d = 1) or removes (d = -1) e's bytes. A blob counts once
// per distinct digest; before the writer has hashed it, it counts in full.
func (s *Store) countLocked(e *entry, d int64) {
	switch {
	case !e.blob:
		s.bytes += d * e.size
	case !e.hashed:
		s.unhashed += d * e.size
		s.unhashedN += int(d)
	default:
		b := s.memBlobs[e.digest]
		if b == nil {
			b = &blobRef{size: e.size}
			s.memBlobs[e.digest] = b
		}
		b.refs += d
		switch {
		case d > 0 && b.refs == 1:
			s.bytes += e.size
		case b.refs == 0:
			s.bytes -= e.size
			delete(s.memBlobs, e.digest)
		}
	}
}

// Delete removes k and waits until the removal is durable. Deleting a missing
// key is not an error.
func (s *Store) Delete(k Key) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.mu.Lock()
	if e := s.entries[k]; e != nil {
		s.removeLocked(e)
	}
	s.mu.Unlock()
	return s.flush()
}

// Flush waits until everything Put, deleted or evicted before the call, and
// the access times recorded by Get, are durable. It returns the error of a
// background write that failed meanwhile (its values were dropped).
func (s *Store) Flush() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.flush()
}

func (s *Store) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	g, failures := s.gen, s.failures
	s.kickWriter()
	for s.doneGen < g && !s.writerDone {
		s.cond.Wait()
	}
	if s.failures != failures {
		return s.lastErr
	}
	return nil
}

func (s *Store) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the store's size and counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		Entries:      len(s.entries),
		Blobs:        len(s.memBlobs) + s.unhashedN,
		Bytes:        s.bytes + s.unhashed,
		MaxBytes:     s.cfg.maxBytes,
		Pending:      s.pendingN,
		PendingBytes: s.pendingB,
	}
	s.mu.Unlock()
	st.Hits = s.hits.Load()
	st.Misses = s.misses.Load()
	st.Evictions = s.evictions.Load()
	st.Corrupt = s.corrupt.Load()
	st.Commits = s.commits.Load()
	return st
}

// Info describes the entry under k without reading its value or counting as
// an access.
func (s *Store) Info(k Key) (EntryInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	if e == nil {
		return EntryInfo{}, false
	}
	return EntryInfo{
		Key:        k,
		Size:       e.size,
		Inline:     !e.blob,
		Producer:   e.producer,
		Created:    time.Unix(0, e.created),
		LastAccess: time.Unix(0, e.access),
		Pending:    e.pending,
	}, true
}

// Dir returns the directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// Close makes everything durable, stops the writer and releases the directory
// lock. It waits for in-flight calls; later calls return ErrClosed. Closing
// twice is a no-op.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()

	ferr := s.flush()
	close(s.stop)
	<-s.done
	s.mu.Lock()
	idx := s.idx
	s.mu.Unlock()
	if idx == nil {
		return ferr
	}
	if err := idx.close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("cache: closing %s: %w", s.dbPath, err))
	}
	return ferr
}

// warn tells the user about something the cache handled on its own.
func (s *Store) warn(format string, args ...any) {
	s.cfg.log.Printf(format, args...)
}

func (s *Store) blobPath(h [32]byte) string {
	name := fmt.Sprintf("%x", h)
	return filepath.Join(s.blobDir, name[:2], name)
}
