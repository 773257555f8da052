package server

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The history is bounded two ways, oldest entries going first: by count
// (ComfyUI's 10000) and by bytes. The bytes are the entries as stored: the
// prompt, its outputs as the nodes reported them (file names, texts, whatever
// a node's UI output holds) and its status messages, as JSON. A node that
// reports 16 MB of UI output makes a 16 MB entry, and GET /history serves
// every entry, so only a byte bound keeps that answer (and server.db) sized.
// The newest entry is always kept, even alone over the bound, so that the
// client waiting on it finds it.

// finish moves a prompt from the queue to the history in one transaction, so a
// crash leaves it in exactly one of them, and evicts the oldest entries beyond
// the bounds.
func (s *store) finish(id string, entry any) error {
	raw, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	s.histMu.Lock()
	defer s.histMu.Unlock()
	count, size := s.histCount, s.histBytes
	err = s.update(func(tx *bolt.Tx) error {
		count, size = s.histCount, s.histBytes
		if err := tx.Bucket(bucketQueue).Delete([]byte(id)); err != nil {
			return err
		}
		h, order := tx.Bucket(bucketHistory), tx.Bucket(bucketHistoryOrder)
		seq, err := h.NextSequence()
		if err != nil {
			return err
		}
		js, err := json.Marshal(storedHistory{Seq: seq, Entry: raw})
		if err != nil {
			return err
		}
		b := sealRecord(id, js)
		if old := h.Get([]byte(id)); old != nil { // cannot happen: ids are unique
			size -= int64(len(old))
			count--
		}
		if err := h.Put([]byte(id), b); err != nil {
			return err
		}
		if err := order.Put(seqKey(seq), []byte(id)); err != nil {
			return err
		}
		count++
		size += int64(len(b))
		c := order.Cursor()
		for k, v := c.First(); k != nil && count > 1 && s.over(count, size); k, v = c.First() {
			if old := h.Get(v); old != nil {
				size -= int64(len(old))
				if err := h.Delete(v); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			count--
		}
		return nil
	})
	if err == nil {
		s.histCount, s.histBytes = count, size
	}
	return err
}

func (s *store) over(count int, size int64) bool {
	return (s.opt.maxCount > 0 && count > s.opt.maxCount) || (s.opt.maxBytes > 0 && size > s.opt.maxBytes)
}

type historyItem struct {
	ID    string
	Entry json.RawMessage
}

// historyStart is the sequence number GET /history starts at: offset entries
// after the oldest when offset >= 0, else the newest maxItems (all when
// maxItems is 0). ComfyUI's max_items and offset.
func (s *store) historyStart(maxItems, offset int) (uint64, error) {
	var start uint64
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistoryOrder).Cursor()
		var k []byte
		switch {
		case offset >= 0:
			k, _ = c.First()
			for i := 0; k != nil && i < offset; i++ {
				k, _ = c.Next()
			}
		case maxItems > 0:
			k, _ = c.Last()
			for i := 1; k != nil && i < maxItems; i++ {
				if pk, _ := c.Prev(); pk != nil {
					k = pk
				} else {
					break
				}
			}
		default:
			k, _ = c.First()
		}
		if k == nil {
			start = ^uint64(0) // nothing to list
		} else {
			start = seqFromKey(k)
		}
		return nil
	})
	return start, err
}

func seqFromKey(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// historyBatch reads entries from sequence number from on, oldest first: at
// most n, and no more than about budget bytes (at least one). next is where
// the following batch starts (0: the end). Entries that no longer decode are
// skipped and named in skipped. GET /history pages through the history this
// way, one short read transaction per batch: a long read transaction would
// hold up bbolt's remapping, and so every write, for as long as a slow client
// takes to read a long history.
func (s *store) historyBatch(from uint64, n int, budget int) (items []historyItem, next uint64, skipped []string, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHistory)
		c := tx.Bucket(bucketHistoryOrder).Cursor()
		size := 0
		k, v := c.Seek(seqKey(from))
		for ; k != nil && len(items) < n && (size < budget || len(items) == 0); k, v = c.Next() {
			raw := h.Get(v)
			if raw == nil {
				continue // an order key left behind; the entry is gone
			}
			sh, err := decodeHistory(v, raw)
			if err != nil {
				skipped = append(skipped, string(v))
				continue
			}
			items = append(items, historyItem{ID: string(v), Entry: append(json.RawMessage(nil), sh.Entry...)})
			size += len(sh.Entry)
		}
		if k != nil {
			next = seqFromKey(k)
		}
		return nil
	})
	return items, next, skipped, err
}

// errUnreadableEntry is a history entry whose stored bytes no longer decode.
type errUnreadableEntry struct {
	id  string
	err error
}

func (e *errUnreadableEntry) Error() string {
	return fmt.Sprintf("history entry %s is unreadable in the server database (%v); delete it with POST /history {\"delete\": [%q]}", e.id, e.err, e.id)
}

// historyOne returns one entry, or nil if there is none.
func (s *store) historyOne(id string) (json.RawMessage, error) {
	var out json.RawMessage
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory).Get([]byte(id))
		if b == nil {
			return nil
		}
		sh, err := decodeHistory([]byte(id), b)
		if err != nil {
			return &errUnreadableEntry{id: id, err: err}
		}
		out = append(json.RawMessage(nil), sh.Entry...)
		return nil
	})
	return out, err
}

// hasHistory reports whether id finished already.
func (s *store) hasHistory(id string) bool {
	found := false
	_ = s.view(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketHistory).Get([]byte(id)) != nil
		return nil
	})
	return found
}

// deleteHistory removes the given entries, or all of them with all.
func (s *store) deleteHistory(ids []string, all bool) error {
	s.histMu.Lock()
	defer s.histMu.Unlock()
	var count int
	var size int64
	err := s.update(func(tx *bolt.Tx) error {
		count, size = s.histCount, s.histBytes
		if all {
			for _, b := range [][]byte{bucketHistory, bucketHistoryOrder} {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			count, size = 0, 0
			return nil
		}
		h, order := tx.Bucket(bucketHistory), tx.Bucket(bucketHistoryOrder)
		for _, id := range ids {
			b := h.Get([]byte(id))
			if b == nil {
				continue
			}
			size -= int64(len(b))
			if sh, err := decodeHistory([]byte(id), b); err == nil && string(order.Get(seqKey(sh.Seq))) == id {
				if err := order.Delete(seqKey(sh.Seq)); err != nil {
					return err
				}
				count--
			} else {
				// An unreadable entry: find its order key the long way.
				c := order.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					if string(v) == id {
						if err := c.Delete(); err != nil {
							return err
						}
						count--
						break
					}
				}
			}
			if err := h.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.histCount, s.histBytes = count, size
	}
	return err
}
