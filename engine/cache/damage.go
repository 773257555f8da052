package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// The cache is disposable, so a damaged index.db is never fatal: it is moved
// aside (to index.db.damaged, replacing an older one) and an empty index takes
// its place, with a warning. bbolt reads the file through a memory map and
// trusts what it finds, so damage shows up in four ways, all handled:
//   - an error from bolt.Open (bad meta pages, a file shorter than a page);
//   - a memory fault when a page lies past the end of a truncated file
//     (SIGBUS) or a damaged pointer leads outside the mapping (SIGSEGV);
//     debug.SetPanicOnFault turns these into panics on the faulting goroutine;
//   - a panic inside bbolt on a garbage page ("invalid freelist page",
//     "unexpected page type", failed assertions);
//   - numbers bbolt follows without checking (overflow counts, child
//     pointers), which make it loop or allocate without bound rather than
//     fail: validateIndex checks them all before bbolt sees the file.
//
// Every call into bbolt runs inside guard, on the caller's goroutine.
// validateIndex runs at Open and before a commit when index.db changed behind
// the store's back. bbolt's own consistency check (tx.Check) is not used: it
// runs on a goroutine of its own, where a fault cannot be recovered, and it
// loops over the same unchecked counts.
//
// What remains: a page damaged while the store is running is guarded against
// faults and panics, but a coherent page pointing back at its own ancestor
// would make a read that reaches it descend forever (the full check runs again
// only when the file's size or time changed, or at the next Open). That takes
// a deliberate edit of a live index.

// damageError says index.db is damaged (or, with obsolete, written by an
// older build); the caller replaces it with a fresh index.
type damageError struct {
	what     string
	cause    any
	obsolete bool
}

func (e *damageError) Error() string {
	if e.cause == nil {
		return e.what
	}
	return fmt.Sprintf("%s: %v", e.what, e.cause)
}

// guard runs fn with memory faults turned into panics and any panic turned
// into a *damageError, so a damaged index cannot crash the process.
func guard(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok {
				// SetPanicOnFault's panic: its text speaks of nil pointers.
				r = fmt.Sprintf("memory fault at %#x: the file is shorter than its index says, or a page points outside it", f.Addr())
			}
			err = &damageError{what: what, cause: r}
		}
	}()
	return fn()
}

// markDamaged records that a read found the index damaged. The writer
// replaces it before its next batch; until then reads of durable entries miss.
func (s *Store) markDamaged(err *damageError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.damage == nil {
		s.damage = err
	}
	s.kickWriter()
}

// maxResets bounds how often a running store replaces a damaged index. A disk
// that damages every fresh index gets no more attempts: caching stops, with
// a warning, and the workflow carries on without it.
const maxResets = 3

// replaceIndex moves the damaged index aside, opens a fresh one and forgets
// every durable entry; values still pending stay and are written to the new
// index. Callers hold batchMu.
func (s *Store) replaceIndex(cause error) {
	s.mu.Lock()
	old := s.idx
	s.idx = nil
	s.resets++
	resets := s.resets
	s.mu.Unlock()
	if old != nil {
		_ = old.close()
	}
	var idx *index
	if resets <= maxResets {
		idx = s.startFresh(cause)
	} else {
		s.warn("cache: %s was damaged again (%v); giving up on it: results are not cached until face0 restarts", s.dbPath, cause)
	}

	s.mu.Lock()
	lost := 0
	for _, e := range s.entries {
		if !e.pending {
			s.removeLocked(e)
			lost++
		}
	}
	s.disk = map[Key]*entry{}
	s.diskBlobs = map[[32]byte]*blobRef{}
	s.badBlobs = map[[32]byte]bool{}
	s.dirtyKeys = map[Key]struct{}{}
	for k := range s.entries {
		s.dirtyKeys[k] = struct{}{}
	}
	s.idx = idx
	s.damage = nil
	s.corrupt.Add(int64(lost))
	s.mu.Unlock()
	// Every blob file is unreferenced now; pending values write theirs again.
	s.removeBlobFiles()
}

// startFresh moves a damaged index aside (or removes an obsolete one), with a
// warning, and opens an empty index in its place. It returns nil, after a
// warning, when even that fails.
func (s *Store) startFresh(cause error) *index {
	var dmg *damageError
	if errors.As(cause, &dmg) && dmg.obsolete {
		s.warn("cache: %s was written by an older face0 (%v); starting an empty cache", s.dbPath, dmg.cause)
		if err := removeFile(s.dbPath); err != nil {
			s.warn("cache: cannot remove %s: %v; results are not cached until it is removed", s.dbPath, err)
			return nil
		}
	} else {
		aside := s.dbPath + ".damaged"
		if err := os.Rename(s.dbPath, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.warn("cache: %s is damaged (%v) and cannot be moved aside: %v; results are not cached until it is removed", s.dbPath, cause, err)
			return nil
		}
		s.warn("cache: %s is damaged (%v); moved it to %s and started an empty cache", s.dbPath, cause, aside)
	}
	db, err := s.openBolt()
	var idx *index
	if err == nil {
		s.pageSize = db.Info().PageSize
		idx = newIndex(db)
		if err = s.initIndex(idx); err != nil {
			_ = idx.close()
		}
	}
	if err != nil {
		s.warn("cache: cannot start a fresh index at %s: %v; results are not cached", s.dbPath, err)
		return nil
	}
	return idx
}

// removeBlobFiles deletes every file named like a blob (and leftover temp
// files); files the cache did not create are left alone.
func (s *Store) removeBlobFiles() {
	subs, _ := os.ReadDir(s.blobDir)
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		d := filepath.Join(s.blobDir, sub.Name())
		files, _ := os.ReadDir(d)
		for _, f := range files {
			if _, ok := parseBlobName(sub.Name(), f.Name()); ok || strings.HasPrefix(f.Name(), tmpPrefix) {
				_ = removeFile(filepath.Join(d, f.Name()))
			}
		}
	}
}
