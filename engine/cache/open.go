package cache

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// tmpPrefix marks in-flight blob writes. Anything with it at Open time was
// left by a crash, since Open holds the only lock on the directory.
const tmpPrefix = ".tmp-"

// Open opens (creating if needed) the cache in dir. It takes an exclusive lock
// on dir/index.db, repairs what a crash may have left behind (temp files,
// orphan blobs, entries whose blob is missing), replaces a damaged or obsolete
// index with an empty one (with a warning) and evicts down to the cap if the
// cap shrank since the last run.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if dir == "" {
		return nil, errors.New("cache: no cache directory given; pass a path such as ~/.cache/face0")
	}
	s := newStore(dir, cfg)
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	if err := prepareDir(s.blobDir); err != nil {
		return nil, err
	}

	err := s.load()
	var dmg *damageError
	if errors.As(err, &dmg) {
		s.closeDB()
		s.mu.Lock()
		s.clearLocked()
		s.mu.Unlock()
		if idx := s.startFresh(dmg); idx != nil {
			_ = idx.close()
			err = s.load()
		}
		if errors.As(err, &dmg) {
			s.closeDB()
			err = fmt.Errorf("cache: %s is damaged and could not be replaced: %w; delete the cache directory to start empty", s.dbPath, err)
		}
	}
	if err != nil {
		s.closeDB()
		return nil, err
	}

	// The cap may be lower than when the data was written.
	if s.cfg.maxBytes > 0 && s.bytes > s.cfg.maxBytes {
		s.batch(true)
		if s.failures > 0 {
			s.closeDB()
			return nil, fmt.Errorf("cache: evicting down to the %d-byte cap in %s: %w", s.cfg.maxBytes, s.dbPath, s.lastErr)
		}
	}
	go s.writeLoop()
	return s, nil
}

func (s *Store) closeDB() {
	if s.idx != nil {
		_ = s.idx.close()
		s.idx = nil
	}
}

// prepareDir makes sure path is a writable directory, turning the usual
// failures into messages that say what to fix.
func prepareDir(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("cache: %s exists but is not a directory; remove it or choose another cache directory", path)
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("cache: cannot create cache directory %s: %w; choose a directory this user can write", path, err)
		}
	case err != nil:
		return fmt.Errorf("cache: cannot use cache directory %s: %w; choose another cache directory", path, err)
	}
	// Probe for writability now rather than failing on the first Put.
	f, err := os.CreateTemp(path, tmpPrefix+"probe-*")
	if err != nil {
		return fmt.Errorf("cache: cache directory %s is not writable: %w; fix its permissions or choose another directory", path, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// openBolt opens index.db. Errors the file's content causes come back as a
// *damageError; a lock held elsewhere or an unusable file as a plain error.
func (s *Store) openBolt() (*bolt.DB, error) {
	// bbolt waits forever for the lock when Timeout is 0; we promise never to
	// hang, so 0 becomes "try once".
	timeout := s.cfg.lockTimeout
	if timeout == 0 {
		timeout = time.Nanosecond
	}
	// If bbolt panics inside Open it leaves its file open and locked; keep
	// hold of it to close it.
	var file *os.File
	opts := &bolt.Options{Timeout: timeout, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}}
	var db *bolt.DB
	err := guard("opening", func() (err error) {
		db, err = bolt.Open(s.dbPath, 0o600, opts)
		return err
	})
	var dmg *damageError
	var pathErr *fs.PathError
	var errno syscall.Errno
	switch {
	case err == nil:
		return db, nil
	case errors.As(err, &dmg):
		if file != nil {
			file.Close()
		}
		return nil, err
	case errors.Is(err, bolt.ErrTimeout):
		return nil, lockedError{fmt.Sprintf("cache: %s is locked: another face0 process holds the cache (waited %v for it); "+
			"wait for that process to finish or use a different cache directory", s.dir, s.cfg.lockTimeout)}
	case errors.As(err, &pathErr), errors.As(err, &errno):
		return nil, fmt.Errorf("cache: opening index %s: %w; check that the directory is writable, "+
			"or delete the cache directory to start empty", s.dbPath, err)
	default: // bbolt's verdict on the content: invalid, checksum, version, too small
		return nil, &damageError{what: "opening", cause: err}
	}
}

// initIndex creates the buckets and format record of a new index.
func (s *Store) initIndex(idx *index) error {
	return idx.update("initialising", func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEntries, bucketInline, bucketBlobs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaFormat) == nil {
			return meta.Put(metaFormat, binary.LittleEndian.AppendUint32(nil, formatVersion))
		}
		return nil
	})
}

// loaded is what readIndex found in index.db.
type loaded struct {
	fresh   bool // a new file: buckets and format record still to create
	entries []*entry
	bad     [][]byte              // index keys whose records are unusable
	stored  map[[32]byte][2]int64 // blob records: refs, size (-1, -1 if unreadable)
}

// readIndex validates index.db and reads its records. Damage comes back as a
// *damageError.
func (s *Store) readIndex(idx *index) (*loaded, error) {
	fi, err := os.Stat(s.dbPath)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	l := &loaded{stored: map[[32]byte][2]int64{}}
	s.pageSize = idx.db.Info().PageSize // mapped: bbolt.Open succeeded
	if fi.Size() > 0 {
		// Before bbolt follows anything in the file.
		if err := validateIndex(s.dbPath, s.pageSize, true); err != nil {
			return nil, err
		}
	}
	err = idx.view("reading", func(tx *bolt.Tx) error {
		if err := checkFormat(tx); err != nil {
			return err
		}
		l.fresh = tx.Bucket(bucketMeta) == nil
		return l.read(tx)
	})
	if err != nil {
		var dmg *damageError
		if errors.As(err, &dmg) {
			return nil, err
		}
		return nil, fmt.Errorf("cache: reading %s: %w", s.dbPath, err)
	}
	return l, nil
}

// checkFormat accepts a new (empty) index or one in this build's format. An
// older format is obsolete and replaced; a newer one belongs to a newer build
// and is left alone.
func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if empty {
			return nil
		}
		return &damageError{what: "index has no format record"}
	}
	v := meta.Get(metaFormat)
	if len(v) != 4 {
		return &damageError{what: fmt.Sprintf("index format record %x is malformed", v)}
	}
	switch ver := binary.LittleEndian.Uint32(v); {
	case ver < formatVersion:
		return &damageError{what: "obsolete index", cause: fmt.Sprintf("index format %d, this build uses %d", ver, formatVersion), obsolete: true}
	case ver > formatVersion:
		return fmt.Errorf("index format %d is newer than this build understands (%d); "+
			"use the newer face0, or another cache directory", ver, formatVersion)
	}
	for _, name := range [][]byte{bucketEntries, bucketInline, bucketBlobs} {
		if tx.Bucket(name) == nil {
			return &damageError{what: fmt.Sprintf("index has no %s bucket", name)}
		}
	}
	return nil
}

func (l *loaded) read(tx *bolt.Tx) error {
	eb, ib, bb := tx.Bucket(bucketEntries), tx.Bucket(bucketInline), tx.Bucket(bucketBlobs)
	if eb == nil {
		return nil // a new index
	}
	err := eb.ForEach(func(k, v []byte) error {
		var key Key
		if len(k) != len(key) {
			l.bad = append(l.bad, slices.Clone(k))
			return nil
		}
		copy(key[:], k)
		e, err := decodeEntry(key, v)
		if err == nil && !e.blob {
			if iv := ib.Get(k); iv == nil || int64(len(iv)) != e.size {
				err = errBadRecord
			}
		}
		if err != nil {
			l.bad = append(l.bad, slices.Clone(k))
			return nil
		}
		l.entries = append(l.entries, e)
		return nil
	})
	if err != nil {
		return err
	}
	return bb.ForEach(func(k, v []byte) error {
		var h [32]byte
		copy(h[:], k)
		refs, size, err := decodeBlob(v)
		if err != nil || len(k) != len(h) {
			refs, size = -1, -1 // forces a rewrite or delete below
		}
		l.stored[h] = [2]int64{refs, size}
		return nil
	})
}

// load opens index.db, reads it into memory and reconciles it with the blob
// files. The index is trusted for what exists; the file system is trusted for
// what bytes are present; reference counts are recomputed from entries, since
// a count is only a cache of that information.
func (s *Store) load() error {
	db, err := s.openBolt()
	if err != nil {
		return err
	}
	idx := newIndex(db)
	s.idx = idx
	l, err := s.readIndex(idx)
	if err != nil {
		return err
	}
	if l.fresh {
		if err := s.initIndex(idx); err != nil {
			return err
		}
	}

	files, err := s.scanBlobs()
	if err != nil {
		return err
	}

	// Keep entries whose data is present; count the rest as corrupt.
	bad := l.bad
	live := l.entries[:0]
	refs := map[[32]byte]int64{}
	for _, e := range l.entries {
		if e.blob {
			if size, ok := files[e.digest]; !ok || size != e.size {
				bad = append(bad, slices.Clone(e.key[:]))
				continue
			}
			refs[e.digest]++
		}
		live = append(live, e)
	}

	repair := len(bad) > 0
	for h, rs := range l.stored {
		repair = repair || rs != [2]int64{refs[h], files[h]}
	}
	for h := range refs {
		_, ok := l.stored[h]
		repair = repair || !ok
	}
	fix := func(tx *bolt.Tx) error {
		eb, ib, bb := tx.Bucket(bucketEntries), tx.Bucket(bucketInline), tx.Bucket(bucketBlobs)
		for _, k := range bad {
			if err := eb.Delete(k); err != nil {
				return err
			}
			if err := ib.Delete(k); err != nil {
				return err
			}
		}
		for h, rs := range l.stored {
			if refs[h] == 0 {
				if err := bb.Delete(h[:]); err != nil {
					return err
				}
			} else if rs != [2]int64{refs[h], files[h]} {
				if err := bb.Put(h[:], encodeBlob(refs[h], files[h])); err != nil {
					return err
				}
			}
		}
		for h, n := range refs {
			if _, ok := l.stored[h]; !ok {
				if err := bb.Put(h[:], encodeBlob(n, files[h])); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if repair {
		if err := idx.update("repairing", fix); err != nil {
			var dmg *damageError
			if errors.As(err, &dmg) {
				return err
			}
			return fmt.Errorf("cache: repairing %s: %w", s.dbPath, err)
		}
	}
	s.corrupt.Add(int64(len(bad)))
	if len(bad) > 0 {
		s.warn("cache: dropped %d damaged or incomplete entries from %s; they will be recomputed", len(bad), s.dbPath)
	}

	// Orphans are deleted only after the repaired index is durable.
	for h := range files {
		if refs[h] == 0 {
			if err := removeFile(s.blobPath(h)); err != nil {
				return fmt.Errorf("cache: removing orphan blob: %w", err)
			}
		}
	}

	s.stamp = stampOf(s.dbPath)

	// Rebuild recency: oldest at the back of the list.
	slices.SortFunc(live, func(a, b *entry) int {
		if a.access != b.access {
			return cmp.Compare(a.access, b.access)
		}
		return slices.Compare(a.key[:], b.key[:])
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range live {
		s.addLocked(e)
		s.disk[e.key] = e
	}
	for h, n := range refs {
		s.diskBlobs[h] = &blobRef{refs: n, size: files[h]}
	}
	return nil
}

// scanBlobs removes leftover temp files and returns the size of every
// well-named blob file. Files we did not name are left alone. The fan-out
// directories (blobs/00 to blobs/ff) are made by the writer when it first
// needs one, so opening a new cache costs no 256 directories and fsyncs, and
// opening one costs a listing only of those that exist.
func (s *Store) scanBlobs() (map[[32]byte]int64, error) {
	subs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, fmt.Errorf("cache: listing %s: %w; check the cache directory's permissions", s.blobDir, err)
	}
	files := map[[32]byte]int64{}
	for _, sd := range subs {
		sub := sd.Name()
		if !sd.IsDir() || len(sub) != 2 || strings.Trim(sub, "0123456789abcdef") != "" {
			continue // not ours
		}
		d := filepath.Join(s.blobDir, sub)
		des, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("cache: listing %s: %w", d, err)
		}
		for _, de := range des {
			name := de.Name()
			if strings.HasPrefix(name, tmpPrefix) {
				if err := removeFile(filepath.Join(d, name)); err != nil {
					return nil, fmt.Errorf("cache: removing leftover temp file: %w", err)
				}
				continue
			}
			h, ok := parseBlobName(sub, name)
			if !ok || !de.Type().IsRegular() {
				continue
			}
			fi, err := de.Info()
			if err != nil {
				continue // vanished or unreadable; treated as missing
			}
			files[h] = fi.Size()
		}
	}
	return files, nil
}

// parseBlobName recognises the files the cache names: 64 lowercase hex
// characters, in the directory named by the first two.
func parseBlobName(sub, name string) (h [32]byte, ok bool) {
	if len(name) != 64 || !strings.HasPrefix(name, sub) {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(name)); err != nil || hex.EncodeToString(h[:]) != name {
		return h, false // not lowercase hex, so not ours
	}
	return h, true
}

// ErrLocked matches (errors.Is) Open's error when another process holds the
// cache, so that a caller can say what to do instead (face0 run names the
// server holding it, --no-cache and --cache).
var ErrLocked = errors.New("cache is locked by another process")

type lockedError struct{ msg string }

func (e lockedError) Error() string        { return e.msg }
func (e lockedError) Is(target error) bool { return target == ErrLocked }
