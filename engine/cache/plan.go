package cache

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// A plan is one index transaction computed from the in-memory state: entries
// to remove, at most one to add, the resulting blob reference counts, and
// pending access times to persist alongside. Building it in memory first lets
// eviction decide what to drop from in-memory recency (which is newer than the
// disk) and lets the memory update after commit be exact.
//
// Plans are built with Store.mu held and committed with Store.wmu held; only
// wmu holders change entries, blobs and bytes, so the plan stays valid between
// the two even though mu is released for the I/O.
type plan struct {
	s       *Store
	add     *entry
	inline  []byte
	removed []*entry
	refs    map[[32]byte]int64 // resulting reference count of each touched blob
	sizes   map[[32]byte]int64
	delta   int64 // change to Store.bytes
	touched []touch
	evicted int64
}

type touch struct {
	e      *entry
	access int64
}

func (s *Store) newPlan() *plan {
	return &plan{s: s, refs: map[[32]byte]int64{}, sizes: map[[32]byte]int64{}}
}

func (p *plan) refCount(h [32]byte) int64 {
	if r, ok := p.refs[h]; ok {
		return r
	}
	if b := p.s.blobs[h]; b != nil {
		return b.refs
	}
	return 0
}

func (p *plan) remove(e *entry) {
	p.removed = append(p.removed, e)
	if !e.blob {
		p.delta -= e.size
		return
	}
	r := p.refCount(e.hash) - 1
	p.refs[e.hash], p.sizes[e.hash] = r, e.size
	if r == 0 {
		p.delta -= e.size
	}
}

func (p *plan) insert(e *entry, inline []byte) {
	p.add, p.inline = e, inline
	if !e.blob {
		p.delta += e.size
		return
	}
	r := p.refCount(e.hash)
	if r == 0 {
		p.delta += e.size
	}
	p.refs[e.hash], p.sizes[e.hash] = r+1, e.size
}

// evict removes least-recently-used entries until the store fits under max,
// skipping the entry being added and any already being removed. Evicting a
// reference to a shared blob frees nothing until its last referrer goes, so
// the loop simply continues.
func (p *plan) evict(max int64) {
	if max <= 0 {
		return
	}
	already := make(map[*entry]bool, len(p.removed))
	for _, e := range p.removed {
		already[e] = true
	}
	for el := p.s.lru.Back(); el != nil && p.s.bytes+p.delta > max; el = el.Prev() {
		e := el.Value.(*entry)
		if e == p.add || already[e] {
			continue
		}
		p.remove(e)
		p.evicted++
	}
}

// write applies the plan to the index inside tx.
func (p *plan) write(tx *bolt.Tx) error {
	eb, ib, bb := tx.Bucket(bucketEntries), tx.Bucket(bucketInline), tx.Bucket(bucketBlobs)
	for _, e := range p.removed {
		if err := eb.Delete(e.key[:]); err != nil {
			return err
		}
		if !e.blob {
			if err := ib.Delete(e.key[:]); err != nil {
				return err
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
	if e := p.add; e != nil {
		if err := eb.Put(e.key[:], encodeEntry(e)); err != nil {
			return err
		}
		if !e.blob {
			if err := ib.Put(e.key[:], p.inline); err != nil {
				return err
			}
		}
	}
	for _, t := range p.touched {
		if p.add != nil && t.e.key == p.add.key {
			continue // the new record already carries a fresh access time
		}
		old := eb.Get(t.e.key[:])
		if len(old) < recHeaderSize {
			continue // removed by this plan
		}
		// bbolt's slice must not be modified; write a copy.
		rec := append([]byte(nil), old...)
		binary.LittleEndian.PutUint64(rec[offAccess:], uint64(t.access))
		if err := eb.Put(t.e.key[:], rec); err != nil {
			return err
		}
	}
	return nil
}

// apply mirrors a committed plan in memory and returns the blobs whose last
// reference went away. Callers hold mu.
func (p *plan) apply() (dead [][32]byte) {
	s := p.s
	for _, e := range p.removed {
		if s.entries[e.key] == e {
			delete(s.entries, e.key)
		}
		if e.elem != nil {
			s.lru.Remove(e.elem)
			e.elem = nil
		}
	}
	for h, r := range p.refs {
		switch b := s.blobs[h]; {
		case r <= 0:
			if b != nil {
				dead = append(dead, h)
			}
			delete(s.blobs, h)
		case b != nil:
			b.refs = r
		default:
			s.blobs[h] = &blobRef{refs: r, size: p.sizes[h]}
		}
	}
	if e := p.add; e != nil {
		s.entries[e.key] = e
		e.elem = s.lru.PushFront(e)
	}
	s.bytes += p.delta
	return dead
}

// takeDirtyLocked hands pending access times to a plan. Entries touched again
// afterwards become dirty anew, so nothing is lost. Callers hold mu.
func (s *Store) takeDirtyLocked() []touch {
	if len(s.dirty) == 0 {
		return nil
	}
	ts := make([]touch, 0, len(s.dirty))
	for _, e := range s.dirty {
		if e.dirty && s.entries[e.key] == e {
			ts = append(ts, touch{e: e, access: e.access})
		}
		e.dirty = false
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
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

// commit writes p to the index and, once it is durable, mirrors it in memory
// and deletes blob files that lost their last reference. Deleting only after
// the commit means a crash leaves an orphan file, never a dangling reference.
// Callers hold wmu.
func (s *Store) commit(p *plan) error {
	err := s.db.Update(p.write)
	s.mu.Lock()
	if err != nil {
		s.restoreDirtyLocked(p.touched)
		s.mu.Unlock()
		return err
	}
	dead := p.apply()
	s.mu.Unlock()
	s.evictions.Add(p.evicted)
	for _, h := range dead {
		// A failure leaves an orphan, which the next Open removes.
		_ = removeFile(s.blobPath(h))
	}
	return nil
}
