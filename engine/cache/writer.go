package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeLoop is the background writer: it runs a batch whenever something
// changed, when many access times are pending, on the flush interval, and
// until nothing is left. A batch commits everything that changed while the
// previous one was writing, so batches grow with the rate of Puts and the
// number of fsyncs stays small.
func (s *Store) writeLoop() {
	defer func() {
		s.mu.Lock()
		s.writerDone = true
		s.cond.Broadcast()
		s.mu.Unlock()
		close(s.done)
	}()
	var tick <-chan time.Time
	if s.cfg.flushInterval > 0 {
		t := time.NewTicker(s.cfg.flushInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		ticked := false
		select {
		case <-s.stop:
			return
		case <-tick:
			ticked = true
		case <-s.kick:
		}
		// A batch that failed is retried on the next kick or tick, not in
		// a tight loop against a failing disk.
		for s.batch(ticked) {
		}
	}
}

// A plan is one batch's index transaction: for each changed key, the record
// to delete and the entry to insert, the resulting blob reference counts, the
// blob files to write first and the access times to persist alongside.
type plan struct {
	ops     []op
	refs    map[[32]byte]int64 // resulting reference count of each touched blob
	sizes   map[[32]byte]int64
	before  map[[32]byte]int64 // reference count on disk before the batch
	files   map[[32]byte]*entry
	touched []touch
}

type op struct {
	key Key
	del *entry // what index.db holds now, or nil
	put *entry // what it should hold, or nil
	rec []byte // put's record, encoded under mu
}

type touch struct {
	e      *entry
	access int64
}

// batch runs one batch and reports whether another may have work: it did
// something and did not fail. Access times alone are written only when
// touchAll is set (the ticker fired, or Open evicts), when a Flush waits,
// when a batch writes anyway, or when flushThreshold of them are pending: a
// kick left over from earlier Puts must not turn a few Gets into an fsync.
func (s *Store) batch(touchAll bool) bool {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()

	s.mu.Lock()
	if s.damage != nil {
		cause := s.damage
		s.mu.Unlock()
		s.replaceIndex(cause)
		s.mu.Lock()
	}
	g := s.gen
	keys := s.dirtyKeys
	s.dirtyKeys = map[Key]struct{}{}
	over := s.cfg.maxBytes > 0 && s.bytes > s.cfg.maxBytes
	var touched []touch
	if touchAll || len(keys) > 0 || over || g > s.doneGen || len(s.dirty) >= flushThreshold {
		touched = s.takeDirtyLocked()
	}
	if len(keys) == 0 && len(touched) == 0 && !over {
		s.doneGen = g
		s.cond.Broadcast()
		s.mu.Unlock()
		return false
	}
	// Hash outside the lock; inflight keeps the values in place.
	var work []*entry
	for k := range keys {
		if e := s.entries[k]; e != nil && e.pending {
			e.inflight = true
			work = append(work, e)
		}
	}
	s.mu.Unlock()

	digests := make([][32]byte, len(work))
	for i, e := range work {
		if !e.hashed { // hashed already when retried after a damaged index
			digests[i] = digestOf(e.blob, e.val)
		}
	}

	s.mu.Lock()
	for i, e := range work {
		if !e.hashed {
			s.settleLocked(e, digests[i])
		}
	}
	s.evictLocked(keys)
	p := s.planLocked(keys, touched)
	idx := s.idx
	s.mu.Unlock()

	err := s.write(idx, p)

	s.mu.Lock()
	var dead [][32]byte
	var dmg *damageError
	switch {
	case err == nil:
		dead = s.applyLocked(p)
		s.commits.Add(1)
	case errors.As(err, &dmg):
		// Nothing of this batch is lost: the values are still in memory and
		// go into the fresh index that replaces the damaged one.
		if s.damage == nil {
			s.damage = dmg
		}
		for _, o := range p.ops {
			s.dirtyKeys[o.key] = struct{}{}
		}
		s.restoreDirtyLocked(p.touched)
	default:
		s.failLocked(p, err)
	}
	more := err == nil || dmg != nil
	for _, e := range work {
		e.inflight = false
		if s.entries[e.key] != e {
			s.releaseLocked(e)
		}
	}
	s.mu.Unlock()

	for _, h := range dead {
		// A failure leaves an orphan, which the next Open removes.
		_ = removeFile(s.blobPath(h))
	}
	// Done only now, so that Flush returns with the files gone too. A batch
	// that met a damaged index is not done: the next one writes its values
	// to the fresh index.
	s.mu.Lock()
	if dmg == nil {
		s.doneGen = g
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	return more
}

// settleLocked records e's digest, moving its bytes from the unhashed count
// to the deduplicated one.
func (s *Store) settleLocked(e *entry, d [32]byte) {
	visible := s.entries[e.key] == e
	if visible {
		s.countLocked(e, -1)
	}
	e.digest, e.hashed = d, true
	if visible {
		s.countLocked(e, 1)
	}
}

// evictLocked removes least-recently-used entries until the store fits under
// the cap, and adds their keys to the batch. It never evicts the most recent
// entry, nor a blob not yet hashed (its bytes are not counted yet: it may turn
// out to share an existing blob). Evicting one referrer of a shared blob frees
// nothing until the last one goes, so the loop simply continues.
func (s *Store) evictLocked(keys map[Key]struct{}) {
	max := s.cfg.maxBytes
	if max <= 0 {
		return
	}
	for el := s.lru.Back(); el != nil && el != s.lru.Front() && s.bytes > max; {
		prev := el.Prev()
		if e := el.Value.(*entry); !e.blob || e.hashed {
			s.removeLocked(e)
			delete(s.dirtyKeys, e.key)
			keys[e.key] = struct{}{}
			s.evictions.Add(1)
		}
		el = prev
	}
}

// planLocked turns the dirty keys into index operations.
func (s *Store) planLocked(keys map[Key]struct{}, touched []touch) *plan {
	p := &plan{
		refs: map[[32]byte]int64{}, sizes: map[[32]byte]int64{}, before: map[[32]byte]int64{},
		files: map[[32]byte]*entry{}, touched: touched,
	}
	ref := func(e *entry, d int64) {
		if _, ok := p.refs[e.digest]; !ok {
			var n int64
			if b := s.diskBlobs[e.digest]; b != nil {
				n = b.refs
			}
			p.refs[e.digest], p.before[e.digest] = n, n
		}
		p.refs[e.digest] += d
		p.sizes[e.digest] = e.size
	}
	for k := range keys {
		want, have := s.entries[k], s.disk[k]
		if want != nil && want.pending && !want.inflight {
			continue // Put after this batch started; it is dirty for the next
		}
		if want != nil && !want.pending && want != have {
			continue // durable in an index since replaced; nothing to write from
		}
		if want == have {
			continue
		}
		o := op{key: k, del: have, put: want}
		if have != nil && have.blob {
			ref(have, -1)
		}
		if want != nil {
			o.rec = encodeEntry(want)
			if want.blob {
				ref(want, 1)
				if p.files[want.digest] == nil && want.pending {
					p.files[want.digest] = want
				}
			}
		}
		p.ops = append(p.ops, o)
	}
	// A blob file is written when the batch gives it its first reference,
	// or when the existing file was found damaged.
	for h, e := range p.files {
		if p.refs[h] <= 0 || (p.before[h] > 0 && !s.badBlobs[h]) {
			delete(p.files, h)
		} else {
			p.files[h] = e
		}
	}
	return p
}

// write makes the plan durable: blob files first (each fsynced, renamed into
// place, its directory fsynced), then one index transaction. A crash between
// the two leaves only unreferenced files, which the next Open removes.
func (s *Store) write(idx *index, p *plan) error {
	if idx == nil {
		return fmt.Errorf("cache: %s could not be replaced after damage; results are not being cached", s.dbPath)
	}
	var installed [][32]byte
	undo := func() {
		for _, h := range installed {
			if p.before[h] == 0 {
				os.Remove(s.blobPath(h))
			}
		}
	}
	dirs := map[string]bool{}
	for h, e := range p.files {
		tmp, err := s.writeTemp(h, e.val)
		if err == nil {
			err = os.Rename(tmp, s.blobPath(h))
			if err != nil {
				os.Remove(tmp)
			}
		}
		if err != nil {
			undo()
			return fmt.Errorf("cache: writing blob for %s: %w", e.key, err)
		}
		installed = append(installed, h)
		dirs[filepath.Dir(s.blobPath(h))] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			undo()
			return fmt.Errorf("cache: syncing %s: %w", d, err)
		}
	}
	// A file changed by someone else gets the same check as at Open before
	// bbolt follows it; otherwise the page every commit frees is checked.
	full := stampOf(s.dbPath) != s.stamp
	if err := validateIndex(s.dbPath, s.pageSize, full); err != nil {
		undo()
		var dmg *damageError
		if errors.As(err, &dmg) {
			return err
		}
		return fmt.Errorf("cache: checking %s before saving %d results: %w", s.dbPath, len(p.ops), err)
	}
	err := idx.update("writing", p.write)
	s.stamp = stampOf(s.dbPath)
	if err != nil {
		undo()
		var dmg *damageError
		if errors.As(err, &dmg) {
			return err
		}
		return fmt.Errorf("cache: saving %d results to %s: %w", len(p.ops), s.dbPath, err)
	}
	return nil
}

// write applies the plan to the index inside tx.
func (p *plan) write(tx *bolt.Tx) error {
	eb, ib, bb := tx.Bucket(bucketEntries), tx.Bucket(bucketInline), tx.Bucket(bucketBlobs)
	if eb == nil || ib == nil || bb == nil {
		return &damageError{what: "index buckets are missing"}
	}
	for _, o := range p.ops {
		if o.del != nil {
			if err := eb.Delete(o.key[:]); err != nil {
				return err
			}
			if !o.del.blob {
				if err := ib.Delete(o.key[:]); err != nil {
					return err
				}
			}
		}
		if e := o.put; e != nil {
			if err := eb.Put(o.key[:], o.rec); err != nil {
				return err
			}
			if !e.blob {
				if err := ib.Put(o.key[:], e.val); err != nil {
					return err
				}
			}
		}
	}
	for h, r := range p.refs {
		var err error
		if r <= 0 {
			err = bb.Delete(h[:])
		} else {
			err = bb.Put(h[:], encodeBlob(r, p.sizes[h]))
		}
		if err != nil {
			return err
		}
	}
	for _, t := range p.touched {
		old := eb.Get(t.e.key[:])
		if len(old) < recHeaderSize {
			continue // removed by this plan
		}
		// bbolt's slice must not be modified; write a copy.
		rec := append([]byte(nil), old...)
		setAccess(t.e.key, rec, t.access)
		if err := eb.Put(t.e.key[:], rec); err != nil {
			return err
		}
	}
	return nil
}

// applyLocked mirrors a committed plan in the disk view, releases the values
// now durable and returns the blobs whose last reference went away.
func (s *Store) applyLocked(p *plan) (dead [][32]byte) {
	for _, o := range p.ops {
		if o.put != nil {
			s.disk[o.key] = o.put
			s.releaseLocked(o.put)
		} else {
			delete(s.disk, o.key)
		}
	}
	for h, r := range p.refs {
		if r > 0 {
			s.diskBlobs[h] = &blobRef{refs: r, size: p.sizes[h]}
		} else {
			delete(s.diskBlobs, h)
			if p.before[h] > 0 {
				dead = append(dead, h)
			}
		}
		if r <= 0 || p.files[h] != nil {
			delete(s.badBlobs, h)
		}
	}
	return dead
}

// failLocked handles a batch that could not be written (disk full, I/O
// error): its new values are dropped, so memory cannot fill up behind a
// failing disk and Get never returns a value that is not durable for longer
// than a batch; removals and access times are retried with the next batch.
func (s *Store) failLocked(p *plan, err error) {
	dropped := 0
	for _, o := range p.ops {
		if o.put != nil && s.entries[o.key] == o.put {
			s.removeLocked(o.put)
			dropped++
		}
		s.dirtyKeys[o.key] = struct{}{}
	}
	s.restoreDirtyLocked(p.touched)
	s.failures++
	s.lastErr = err
	s.warn("%v; %d results were not cached and will be recomputed when next needed", err, dropped)
}

// takeDirtyLocked hands the pending access times of durable entries to a
// batch. Entries not yet durable stay queued: their record is written with
// their latest access time anyway. Callers hold mu.
func (s *Store) takeDirtyLocked() []touch {
	if len(s.dirty) == 0 {
		return nil
	}
	var ts []touch
	keep := s.dirty[:0]
	for _, e := range s.dirty {
		switch {
		case s.entries[e.key] != e:
			e.dirty = false
		case e.pending || s.disk[e.key] != e:
			keep = append(keep, e)
		default:
			ts = append(ts, touch{e: e, access: e.access})
			e.dirty = false
		}
	}
	clear(s.dirty[len(keep):])
	s.dirty = keep
	return ts
}

// restoreDirtyLocked re-queues access times whose transaction failed.
func (s *Store) restoreDirtyLocked(ts []touch) {
	for _, t := range ts {
		if s.entries[t.e.key] == t.e && !t.e.dirty {
			t.e.dirty = true
			s.dirty = append(s.dirty, t.e)
		}
	}
}

// writeTemp writes value to a fresh temp file next to its final location (so
// the later rename cannot cross file systems) and fsyncs it.
func (s *Store) writeTemp(h [32]byte, value []byte) (path string, err error) {
	dir := filepath.Dir(s.blobPath(h))
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if errors.Is(err, os.ErrNotExist) {
		// The first blob of its fan-out directory (or one removed since).
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

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// fileStamp identifies a version of index.db: a change the store did not
// make shows as a different size or modification time.
type fileStamp struct {
	size  int64
	mtime time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime()}
}
