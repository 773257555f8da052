package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store keeps the queue and the history in their own bbolt file, separate from
// the node cache: the cache may be wiped or evicted at any time, the record of
// what was asked and what came out may not.
type store struct {
	db   *bolt.DB
	path string
	opt  storeOptions

	// histMu serializes history writes, so that the counters below follow
	// what the committed transactions did.
	histMu    sync.Mutex
	histCount int
	histBytes int64
}

// storeOptions bound the history; zero means unbounded.
type storeOptions struct {
	maxCount int
	maxBytes int64
	logf     func(format string, args ...any)
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
	// Attempts counts the runs started, written before each run begins, so
	// that a run the server does not survive still counts (see beginAttempt).
	Attempts int `json:"attempts,omitempty"`
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

// openStore opens (or creates) the database at path. A damaged file is
// salvaged or refused with a message (see openDB); never a Go trace.
func openStore(path string, opt storeOptions) (*store, error) {
	if opt.logf == nil {
		opt.logf = func(string, ...any) {}
	}
	db, err := openDB(path, opt.logf)
	if err != nil {
		return nil, err
	}
	s := &store{db: db, path: path, opt: opt}
	err = s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketQueue, bucketHistory, bucketHistoryOrder} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.view(func(tx *bolt.Tx) error {
			s.histCount = tx.Bucket(bucketHistoryOrder).Stats().KeyN
			return tx.Bucket(bucketHistory).ForEach(func(_, v []byte) error {
				s.histBytes += int64(len(v))
				return nil
			})
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare server database %s: %w", path, err)
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

// errDamaged is what every store operation returns once bbolt has tripped
// over damage while the server runs (a file truncated or overwritten behind
// its back): a panic or a fault in mapped memory, recovered.
type errDamaged struct {
	path  string
	cause any
}

func (e *errDamaged) Error() string {
	return fmt.Sprintf("server database %s is damaged (%v); restart face0 serve: at start it checks the file, keeps what can be read and sets the damaged file aside", e.path, e.cause)
}

// protect runs fn with faults in mapped memory turned into panics, and any
// panic into an error: bbolt reads the file through a memory map and panics
// on pages it does not understand. bbolt's Update and View roll their
// transaction back when fn panics, so the database stays usable for what is
// not damaged.
func (s *store) protect(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &errDamaged{path: s.path, cause: r}
			s.opt.logf("%v", err)
		}
	}()
	return fn()
}

func (s *store) view(fn func(*bolt.Tx) error) error {
	return s.protect(func() error { return s.db.View(fn) })
}

func (s *store) update(fn func(*bolt.Tx) error) error {
	return s.protect(func() error { return s.db.Update(fn) })
}

// enqueue persists p, giving it the next sequence number and, unless number is
// given, a number in arrival order (negative with front, so it sorts first,
// as in ComfyUI).
func (s *store) enqueue(p *queuedPrompt, number *float64, front bool) error {
	return s.update(func(tx *bolt.Tx) error {
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
		return putQueued(q, p)
	})
}

// putQueued stores p, sealed.
func putQueued(q *bolt.Bucket, p *queuedPrompt) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return q.Put([]byte(p.ID), sealRecord(p.ID, b))
}

// decodeQueued reads a stored queue record.
func decodeQueued(k, v []byte) (*queuedPrompt, error) {
	js, err := unsealRecord(k, v)
	if err != nil {
		return nil, err
	}
	var p queuedPrompt
	if err := json.Unmarshal(js, &p); err != nil {
		return nil, err
	}
	if p.ID != string(k) {
		return nil, fmt.Errorf("the record names prompt %q", p.ID)
	}
	return &p, nil
}

// decodeHistory reads a stored history record.
func decodeHistory(k, v []byte) (storedHistory, error) {
	var sh storedHistory
	js, err := unsealRecord(k, v)
	if err != nil {
		return sh, err
	}
	if err := json.Unmarshal(js, &sh); err != nil {
		return sh, err
	}
	if len(sh.Entry) == 0 || sh.Seq == 0 {
		return sh, errors.New("the record has no entry")
	}
	return sh, nil
}

var errDuplicateID = errors.New("a prompt with this prompt_id was already submitted; leave prompt_id out to get a fresh one")

// unreadablePrompt is a queued record that no longer decodes.
type unreadablePrompt struct {
	ID  string
	Err error
}

// loadQueue returns every persisted prompt, in run order, and the records
// that no longer decode. The one that was running when the server stopped is
// among them: it runs again (see beginAttempt for the limit).
func (s *store) loadQueue() ([]*queuedPrompt, []unreadablePrompt, error) {
	var out []*queuedPrompt
	var bad []unreadablePrompt
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			p, err := decodeQueued(k, v)
			if err != nil {
				bad = append(bad, unreadablePrompt{ID: string(k), Err: err})
				return nil
			}
			out = append(out, p)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return runsBefore(out[i], out[j]) })
	return out, bad, err
}

func runsBefore(a, b *queuedPrompt) bool {
	if a.Number != b.Number {
		return a.Number < b.Number
	}
	return a.Seq < b.Seq
}

// renumber gives a queued prompt a new number (its place in the run order).
func (s *store) renumber(id string, number float64) error {
	return s.update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		v := q.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("prompt %s is not in the stored queue", id)
		}
		p, err := decodeQueued([]byte(id), v)
		if err != nil {
			return fmt.Errorf("queued prompt %s is unreadable: %w", id, err)
		}
		p.Number = number
		return putQueued(q, p)
	})
}

func (s *store) dequeue(ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		for _, id := range ids {
			if err := q.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// beginAttempt counts one more attempt at running id and returns the count.
// It is committed (fsync'd) before the run starts: a run that takes the
// server down (a crash, kill -9, the machine losing power) still counts, so a
// prompt that crashes the server cannot make every restart crash again.
func (s *store) beginAttempt(id string) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		v := q.Get([]byte(id))
		if v == nil {
			return nil // removed meanwhile; nothing to count
		}
		p, err := decodeQueued([]byte(id), v)
		if err != nil {
			return fmt.Errorf("queued prompt %s is unreadable: %w", id, err)
		}
		p.Attempts++
		n = p.Attempts
		return putQueued(q, p)
	})
	return n, err
}

// undoAttempt takes back the attempt of a run that the server cut short on
// purpose (shutting down): only runs the server did not survive count.
func (s *store) undoAttempt(id string) error {
	return s.update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		v := q.Get([]byte(id))
		if v == nil {
			return nil
		}
		p, err := decodeQueued([]byte(id), v)
		if err != nil || p.Attempts == 0 {
			return err
		}
		p.Attempts--
		return putQueued(q, p)
	})
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
