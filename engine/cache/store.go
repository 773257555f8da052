package cache

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
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

// Stats is a snapshot of the store. Entries, Blobs and Bytes describe what is
// on disk; Hits, Misses, Evictions and Corrupt count events since Open.
type Stats struct {
	Entries   int   // index entries
	Blobs     int   // distinct blob files
	Bytes     int64 // inline value bytes plus each distinct blob once
	MaxBytes  int64 // the cap; 0 means unlimited
	Hits      int64
	Misses    int64
	Evictions int64 // entries removed to stay under MaxBytes
	Corrupt   int64 // entries dropped because their data was missing or altered
}

// EntryInfo describes one cached value without reading it.
type EntryInfo struct {
	Key        Key
	Size       int64
	Inline     bool // stored inside index.db rather than as a blob file
	Producer   string
	Created    time.Time
	LastAccess time.Time // includes accesses not yet flushed to disk
}

// entry is the in-memory copy of one index record. The fields above the
// marker never change once the entry is visible (a replacing Put creates a new
// entry), so Get may read them without holding Store.mu.
type entry struct {
	key      Key
	blob     bool
	size     int64
	hash     [32]byte
	created  int64
	producer string

	// Guarded by Store.mu.
	access int64
	dirty  bool // access changed since it was last persisted
	elem   *list.Element
}

type blobRef struct {
	refs int64
	size int64
}

// Store is a durable content-addressed cache. See the package documentation
// for the on-disk layout and guarantees.
//
// Locking, outermost first:
//   - closeMu is held shared by every public operation and exclusively by
//     Close, so Close waits for in-flight calls and the database is never
//     closed underneath one.
//   - wmu serialises everything that changes the index or creates or removes
//     blob files, so a plan computed from memory stays valid until committed.
//   - mu guards the in-memory index; it is held only briefly and never across
//     I/O, so Gets are not blocked by a Put's fsyncs.
type Store struct {
	dir     string
	blobDir string
	dbPath  string
	db      *bolt.DB
	cfg     config

	closeMu sync.RWMutex
	closed  bool

	wmu sync.Mutex

	mu      sync.Mutex
	entries map[Key]*entry
	lru     *list.List // of *entry; front is most recently used
	blobs   map[[32]byte]*blobRef
	bytes   int64
	dirty   []*entry

	hits, misses, evictions, corrupt atomic.Int64

	kick chan struct{} // wakes the flusher early; buffered, never blocks
	stop chan struct{}
	done chan struct{}
}

// Get returns the value stored under k. A missing, truncated or altered blob
// is reported as a miss (and its entry removed), never as data. Get does not
// write to the index; the access time is persisted later in a batch.
func (s *Store) Get(k Key) ([]byte, bool, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}

	s.mu.Lock()
	e := s.entries[k]
	s.mu.Unlock()
	if e == nil {
		s.misses.Add(1)
		return nil, false, nil
	}

	var (
		val []byte
		ok  bool
		err error
	)
	if e.blob {
		val, ok, err = s.readBlob(e.hash, e.size)
	} else {
		val, ok, err = s.readInline(k, e.size)
	}
	if err != nil {
		return nil, false, err
	}
	if !ok {
		s.misses.Add(1)
		return nil, false, s.dropCorrupt(e)
	}

	now := s.cfg.now().UnixNano()
	s.mu.Lock()
	// The entry may have been replaced or evicted while we read; then its
	// recency no longer matters.
	if s.entries[k] == e {
		e.access = now
		s.lru.MoveToFront(e.elem)
		if !e.dirty {
			e.dirty = true
			s.dirty = append(s.dirty, e)
		}
	}
	pending := len(s.dirty)
	s.mu.Unlock()
	if pending >= flushThreshold {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.hits.Add(1)
	return val, true, nil
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
	if int64(len(b)) != size || sha256.Sum256(b) != h {
		return nil, false, nil
	}
	return b, true, nil
}

func (s *Store) readInline(k Key, size int64) (val []byte, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketInline).Get(k[:])
		if v != nil && int64(len(v)) == size {
			// bbolt's slice is only valid inside the transaction.
			val, ok = bytes.Clone(v), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("cache: reading %s from %s: %w", k, s.dbPath, err)
	}
	if ok && val == nil {
		val = []byte{} // a cached empty value is still a hit; keep it non-nil
	}
	return val, ok, nil
}

// dropCorrupt removes bad from the index, together with every other entry
// sharing its blob: the file is bad for all of them, and removing the last
// reference deletes it so a later Put of the same content rewrites it instead
// of deduplicating against the damaged copy.
func (s *Store) dropCorrupt(bad *entry) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()

	s.mu.Lock()
	if s.entries[bad.key] != bad {
		// Evicted, deleted or replaced concurrently: the read failed because
		// the data went away legitimately, not because it was damaged.
		s.mu.Unlock()
		return nil
	}
	p := s.newPlan()
	p.remove(bad)
	if bad.blob {
		for _, e := range s.entries {
			if e != bad && e.blob && e.hash == bad.hash {
				p.remove(e)
			}
		}
	}
	p.touched = s.takeDirtyLocked()
	s.mu.Unlock()

	if err := s.commit(p); err != nil {
		return fmt.Errorf("cache: removing corrupt entry %s from %s: %w", bad.key, s.dbPath, err)
	}
	s.corrupt.Add(int64(len(p.removed)))
	return nil
}

// Put stores value under k, replacing any previous value. Caching is best
// effort: a value larger than the byte cap is not stored (any older value
// under k is removed) and Put returns nil.
// When the new value pushes the store over the cap, least-recently-used
// entries (never this one) are evicted in the same index transaction.
func (s *Store) Put(k Key, value []byte, producer string) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	size := int64(len(value))
	if s.cfg.maxBytes > 0 && size > s.cfg.maxBytes {
		// Too big to cache. Drop any older value under k so Get never
		// returns something other than the latest Put.
		return s.delete(k)
	}

	e := &entry{key: k, size: size, producer: producer, blob: len(value) > s.cfg.inlineLimit}
	var inline []byte
	if !e.blob {
		inline = value
	}

	// Hash and write the blob before taking wmu so concurrent Puts overlap
	// their slowest part (hashing, writing, fsync). Renaming it into place is
	// done under wmu, where the reference counts cannot change underneath us.
	var tmp string
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	var err error
	if e.blob {
		e.hash = sha256.Sum256(value)
		if !s.hasBlob(e.hash) {
			if tmp, err = s.writeTemp(e.hash, value); err != nil {
				return fmt.Errorf("cache: writing blob for %s: %w", k, err)
			}
		}
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()

	installed := false
	if e.blob && !s.hasBlob(e.hash) {
		if tmp == "" {
			// Another goroutine held the blob when we looked and has since
			// dropped it; write it now.
			if tmp, err = s.writeTemp(e.hash, value); err != nil {
				return fmt.Errorf("cache: writing blob for %s: %w", k, err)
			}
		}
		if err := s.install(tmp, e.hash); err != nil {
			return fmt.Errorf("cache: installing blob for %s: %w", k, err)
		}
		tmp, installed = "", true
	}

	now := s.cfg.now().UnixNano()
	e.created, e.access = now, now

	s.mu.Lock()
	p := s.newPlan()
	if old := s.entries[k]; old != nil {
		p.remove(old)
	}
	p.insert(e, inline)
	p.evict(s.cfg.maxBytes)
	p.touched = s.takeDirtyLocked()
	s.mu.Unlock()

	if err := s.commit(p); err != nil {
		if installed && !s.hasBlob(e.hash) {
			os.Remove(s.blobPath(e.hash))
		}
		return fmt.Errorf("cache: recording %s in %s: %w", k, s.dbPath, err)
	}
	return nil
}

// Delete removes k. Deleting a missing key is not an error.
func (s *Store) Delete(k Key) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.delete(k)
}

// delete is Delete without the closed check, for callers already inside a
// public operation (closeMu must not be read-locked twice).
func (s *Store) delete(k Key) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()

	s.mu.Lock()
	e := s.entries[k]
	if e == nil {
		s.mu.Unlock()
		return nil
	}
	p := s.newPlan()
	p.remove(e)
	p.touched = s.takeDirtyLocked()
	s.mu.Unlock()

	if err := s.commit(p); err != nil {
		return fmt.Errorf("cache: deleting %s from %s: %w", k, s.dbPath, err)
	}
	return nil
}

// Flush persists access times recorded by Get since the last write.
func (s *Store) Flush() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.flush()
}

func (s *Store) flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	p := s.newPlan()
	p.touched = s.takeDirtyLocked()
	s.mu.Unlock()
	if len(p.touched) == 0 {
		return nil
	}
	if err := s.commit(p); err != nil {
		return fmt.Errorf("cache: saving access times to %s: %w", s.dbPath, err)
	}
	return nil
}

// Stats returns a snapshot of the store's size and counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{Entries: len(s.entries), Blobs: len(s.blobs), Bytes: s.bytes, MaxBytes: s.cfg.maxBytes}
	s.mu.Unlock()
	st.Hits = s.hits.Load()
	st.Misses = s.misses.Load()
	st.Evictions = s.evictions.Load()
	st.Corrupt = s.corrupt.Load()
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
	}, true
}

// Dir returns the directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// Close persists pending access times and releases the directory lock. It
// waits for in-flight calls; later calls return ErrClosed. Closing twice is a
// no-op.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()

	close(s.stop)
	<-s.done
	ferr := s.flush()
	if err := s.db.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("cache: closing %s: %w", s.dbPath, err))
	}
	return ferr
}

// flushLoop persists access times periodically and when many are pending, so
// a long-running process does not lose much recency if it crashes.
func (s *Store) flushLoop() {
	defer close(s.done)
	var tick <-chan time.Time
	if s.cfg.flushInterval > 0 {
		t := time.NewTicker(s.cfg.flushInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-tick:
		case <-s.kick:
		}
		// An error leaves the times pending; the next attempt, Flush or
		// Close retries and reports it.
		_ = s.flush()
	}
}

func (s *Store) hasBlob(h [32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobs[h] != nil
}

func (s *Store) blobPath(h [32]byte) string {
	name := hex.EncodeToString(h[:])
	return filepath.Join(s.blobDir, name[:2], name)
}

// writeTemp writes value to a fresh temp file next to its final location (so
// the later rename cannot cross file systems) and fsyncs it.
func (s *Store) writeTemp(h [32]byte, value []byte) (path string, err error) {
	dir := filepath.Dir(s.blobPath(h))
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if errors.Is(err, os.ErrNotExist) {
		// Open creates every fan-out directory; recreate one removed since.
		if err = os.MkdirAll(dir, 0o755); err == nil {
			if err = syncDir(s.blobDir); err == nil {
				f, err = os.CreateTemp(dir, tmpPrefix+"*")
			}
		}
	}
	if err != nil {
		return "", err
	}
	if _, err = f.Write(value); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// install renames a synced temp file to its content-addressed name and
// fsyncs the directory, so the name is durable before the index refers to it.
func (s *Store) install(tmp string, h [32]byte) error {
	final := s.blobPath(h)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
