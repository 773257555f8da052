package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store keeps the queue and the history in their own bbolt file, separate from
// the node cache: the cache may be wiped or evicted at any time, the record of
// what was asked and what came out may not.
type store struct {
	db *bolt.DB
}

var (
	bucketQueue        = []byte("queue")         // prompt id -> queuedPrompt
	bucketHistory      = []byte("history")       // prompt id -> storedHistory
	bucketHistoryOrder = []byte("history_order") // big-endian seq -> prompt id
)

// queuedPrompt is a prompt waiting for (or in) the worker, as persisted.
type queuedPrompt struct {
	Number    float64         `json:"number"`
	Seq       uint64          `json:"seq"` // ties between equal numbers go by arrival
	ID        string          `json:"id"`
	Prompt    json.RawMessage `json:"prompt"`
	ExtraData map[string]any  `json:"extra_data"`
	Outputs   []string        `json:"outputs"`           // outputs_to_execute
	Targets   []string        `json:"targets,omitempty"` // explicit partial-execution targets
	ClientID  string          `json:"client_id,omitempty"`
	Queued    time.Time       `json:"queued"`
}

// item is the ComfyUI queue/history "prompt" tuple:
// [number, prompt_id, prompt, extra_data, outputs_to_execute].
func (p *queuedPrompt) item() []any {
	extra := p.ExtraData
	if extra == nil {
		extra = map[string]any{}
	}
	outs := p.Outputs
	if outs == nil {
		outs = []string{}
	}
	return []any{p.Number, p.ID, p.Prompt, extra, outs}
}

type storedHistory struct {
	Seq   uint64          `json:"seq"`
	Entry json.RawMessage `json:"entry"`
}

func openStore(path string) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create folder for the server database: %w", err)
	}
	// The timeout turns "another face0 serve holds this HOME" into an error
	// instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("server database %s is locked: is another `face0 serve` using this HOME? stop it or pass another --home", path)
		}
		return nil, fmt.Errorf("open server database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketQueue, bucketHistory, bucketHistoryOrder} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare server database %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// enqueue persists p, giving it the next sequence number and, unless number is
// given, a number in arrival order (negative with front, so it sorts first,
// as in ComfyUI).
func (s *store) enqueue(p *queuedPrompt, number *float64, front bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		if q.Get([]byte(p.ID)) != nil || tx.Bucket(bucketHistory).Get([]byte(p.ID)) != nil {
			return errDuplicateID
		}
		seq, err := q.NextSequence()
		if err != nil {
			return err
		}
		p.Seq = seq
		switch {
		case number != nil:
			p.Number = *number
		case front:
			p.Number = -float64(seq)
		default:
			p.Number = float64(seq)
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return q.Put([]byte(p.ID), b)
	})
}

var errDuplicateID = errors.New("a prompt with this prompt_id was already submitted; leave prompt_id out to get a fresh one")

// loadQueue returns every persisted prompt, in run order. The one that was
// running when the server stopped is among them: it runs again.
func (s *store) loadQueue() ([]*queuedPrompt, error) {
	var out []*queuedPrompt
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var p queuedPrompt
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("queued prompt %s is unreadable: %w", k, err)
			}
			out = append(out, &p)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return runsBefore(out[i], out[j]) })
	return out, err
}

func runsBefore(a, b *queuedPrompt) bool {
	if a.Number != b.Number {
		return a.Number < b.Number
	}
	return a.Seq < b.Seq
}

func (s *store) dequeue(ids ...string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		for _, id := range ids {
			if err := q.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// finish moves a prompt from the queue to the history in one transaction, so a
// crash leaves it in exactly one of them, and trims the history to max entries.
func (s *store) finish(id string, entry any, max int) error {
	raw, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketQueue).Delete([]byte(id)); err != nil {
			return err
		}
		h, order := tx.Bucket(bucketHistory), tx.Bucket(bucketHistoryOrder)
		seq, err := h.NextSequence()
		if err != nil {
			return err
		}
		b, err := json.Marshal(storedHistory{Seq: seq, Entry: raw})
		if err != nil {
			return err
		}
		if err := h.Put([]byte(id), b); err != nil {
			return err
		}
		if err := order.Put(seqKey(seq), []byte(id)); err != nil {
			return err
		}
		if max <= 0 {
			return nil
		}
		// Trim the oldest. Counting walks the keys (Stats misses what this
		// transaction wrote); at 10000 entries that is well under a
		// millisecond, cheap next to running a prompt.
		n := 0
		c := order.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		for k, v := c.First(); k != nil && n > max; k, v = c.Next() {
			if err := h.Delete(v); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n--
		}
		return nil
	})
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

type historyItem struct {
	ID    string
	Entry json.RawMessage
}

// history lists entries oldest first; with max > 0, only the newest max.
func (s *store) history(max int) ([]historyItem, error) {
	var out []historyItem
	err := s.db.View(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHistory)
		c := tx.Bucket(bucketHistoryOrder).Cursor()
		var ids []string
		for k, v := c.Last(); k != nil && (max <= 0 || len(ids) < max); k, v = c.Prev() {
			ids = append(ids, string(v))
		}
		for i := len(ids) - 1; i >= 0; i-- {
			var sh storedHistory
			if err := json.Unmarshal(h.Get([]byte(ids[i])), &sh); err != nil {
				return fmt.Errorf("history entry %s is unreadable: %w", ids[i], err)
			}
			out = append(out, historyItem{ID: ids[i], Entry: sh.Entry})
		}
		return nil
	})
	return out, err
}

// historyOne returns one entry, or nil if there is none.
func (s *store) historyOne(id string) (json.RawMessage, error) {
	var out json.RawMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory).Get([]byte(id))
		if b == nil {
			return nil
		}
		var sh storedHistory
		if err := json.Unmarshal(b, &sh); err != nil {
			return fmt.Errorf("history entry %s is unreadable: %w", id, err)
		}
		out = append(json.RawMessage(nil), sh.Entry...)
		return nil
	})
	return out, err
}

// hasHistory reports whether id finished already.
func (s *store) hasHistory(id string) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketHistory).Get([]byte(id)) != nil
		return nil
	})
	return found
}

// deleteHistory removes the given entries, or all of them with ids == nil.
func (s *store) deleteHistory(ids []string, all bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if all {
			for _, b := range [][]byte{bucketHistory, bucketHistoryOrder} {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			return nil
		}
		h, order := tx.Bucket(bucketHistory), tx.Bucket(bucketHistoryOrder)
		for _, id := range ids {
			b := h.Get([]byte(id))
			if b == nil {
				continue
			}
			var sh storedHistory
			if json.Unmarshal(b, &sh) == nil {
				if err := order.Delete(seqKey(sh.Seq)); err != nil {
					return err
				}
			}
			if err := h.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}
