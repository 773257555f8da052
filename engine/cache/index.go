package cache

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// index is an open index.db, entered only through view, update and close.
//
// bbolt takes internal locks without defer while Begin reads the meta pages
// from its mapping, so a fault there (the file was truncated under it) leaves
// them held and every later transaction or Close on that *bolt.DB waits
// forever, including one another goroutine has already started. So Begin is
// serialised here, and once one has faulted the handle is poisoned: never
// entered nor closed again, only abandoned (its descriptor and mapping leak,
// at most a few times per process, since a Store replaces a damaged index at
// most maxResets times). Faults and panics after Begin are safe: the
// transaction is rolled back by a deferred call, which releases bbolt's locks.
type index struct {
	db       *bolt.DB
	mu       sync.Mutex // held across Begin
	poisoned bool
}

func newIndex(db *bolt.DB) *index { return &index{db: db} }

var errPoisoned = &damageError{what: "the index faulted while opening a transaction earlier"}

func (ix *index) begin(writable bool) (*bolt.Tx, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.poisoned {
		return nil, errPoisoned
	}
	var tx *bolt.Tx
	err := guard("opening a transaction", func() (err error) {
		tx, err = ix.db.Begin(writable)
		return err
	})
	var dmg *damageError
	if errors.As(err, &dmg) {
		ix.poisoned = true
	}
	return tx, err
}

// view runs fn in a read transaction.
func (ix *index) view(what string, fn func(*bolt.Tx) error) error {
	tx, err := ix.begin(false)
	if err != nil {
		return err
	}
	return guard(what, func() error {
		defer tx.Rollback()
		return fn(tx)
	})
}

// update runs fn in a write transaction and commits it.
func (ix *index) update(what string, fn func(*bolt.Tx) error) error {
	tx, err := ix.begin(true)
	if err != nil {
		return err
	}
	return guard(what, func() error {
		defer tx.Rollback() // after Commit: a no-op returning ErrTxClosed
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// close closes the database unless it is poisoned.
func (ix *index) close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.poisoned {
		return nil
	}
	ix.poisoned = true // closed: never entered again
	return guard("closing", ix.db.Close)
}
