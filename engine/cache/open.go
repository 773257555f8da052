package cache

import (
	"cmp"
	"container/list"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// tmpPrefix marks in-flight blob writes. Anything with it at Open time was
// left by a crash, since Open holds the only lock on the directory.
const tmpPrefix = ".tmp-"

// Open opens (creating if needed) the cache in dir. It takes an exclusive lock
// on dir/index.db, repairs what a crash may have left behind (temp files,
// orphan blobs, entries whose blob is missing) and evicts down to the cap if
// the cap shrank since the last run.
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
	blobDir := filepath.Join(dir, "blobs")
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	if err := prepareDir(blobDir); err != nil {
		return nil, err
	}

	dbPath := filepath.Join(dir, "index.db")
	// bbolt waits forever for the lock when Timeout is 0; we promise never to
	// hang, so 0 becomes "try once".
	timeout := cfg.lockTimeout
	if timeout == 0 {
		timeout = time.Nanosecond
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, lockedError{fmt.Sprintf("cache: %s is locked: another face0 process holds the cache (waited %v for it); "+
			"wait for that process to finish or use a different cache directory", dir, cfg.lockTimeout)}
	}
	if err != nil {
		return nil, fmt.Errorf("cache: opening index %s: %w; check that the directory is writable, "+
			"or delete the cache directory to start empty", dbPath, err)
	}

	s := &Store{
		dir:     dir,
		blobDir: blobDir,
		dbPath:  dbPath,
		db:      db,
		cfg:     cfg,
		entries: map[Key]*entry{},
		lru:     list.New(),
		blobs:   map[[32]byte]*blobRef{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	go s.flushLoop()
	return s, nil
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

// load reads the index into memory and reconciles it with the blob files.
// The index is trusted for what exists; the file system is trusted for what
// bytes are present; reference counts are recomputed from entries, since a
// count is only a cache of that information.
func (s *Store) load() error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEntries, bucketInline, bucketBlobs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaFormat); {
		case v == nil:
			return meta.Put(metaFormat, binary.LittleEndian.AppendUint32(nil, formatVersion))
		case len(v) != 4 || binary.LittleEndian.Uint32(v) != formatVersion:
			return fmt.Errorf("index format %x is not the one this build understands (%d); "+
				"delete %s to start an empty cache", v, formatVersion, s.dir)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("cache: initialising %s: %w", s.dbPath, err)
	}

	var (
		loaded []*entry
		bad    [][]byte // index keys whose records are unusable
		stored = map[[32]byte][2]int64{}
	)
	if err := s.db.View(func(tx *bolt.Tx) error {
		ib := tx.Bucket(bucketInline)
		err := tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			var key Key
			if len(k) != len(key) {
				bad = append(bad, slices.Clone(k))
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
				bad = append(bad, slices.Clone(k))
				return nil
			}
			loaded = append(loaded, e)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			var h [32]byte
			copy(h[:], k)
			refs, size, err := decodeBlob(v)
			if err != nil || len(k) != len(h) {
				refs, size = -1, -1 // forces a rewrite or delete below
			}
			stored[h] = [2]int64{refs, size}
			return nil
		})
	}); err != nil {
		return fmt.Errorf("cache: reading %s: %w", s.dbPath, err)
	}

	files, err := s.scanBlobs()
	if err != nil {
		return err
	}

	// Keep entries whose data is present; count the rest as corrupt.
	live := loaded[:0]
	refs := map[[32]byte]int64{}
	for _, e := range loaded {
		if e.blob {
			if size, ok := files[e.hash]; !ok || size != e.size {
				bad = append(bad, slices.Clone(e.key[:]))
				continue
			}
			refs[e.hash]++
		}
		live = append(live, e)
	}

	if err := s.db.Update(func(tx *bolt.Tx) error {
		eb, ib, bb := tx.Bucket(bucketEntries), tx.Bucket(bucketInline), tx.Bucket(bucketBlobs)
		for _, k := range bad {
			if err := eb.Delete(k); err != nil {
				return err
			}
			if err := ib.Delete(k); err != nil {
				return err
			}
		}
		for h, rs := range stored {
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
			if _, ok := stored[h]; !ok {
				if err := bb.Put(h[:], encodeBlob(n, files[h])); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("cache: repairing %s: %w", s.dbPath, err)
	}
	s.corrupt.Add(int64(len(bad)))

	// Orphans are deleted only after the repaired index is durable.
	for h := range files {
		if refs[h] == 0 {
			if err := removeFile(s.blobPath(h)); err != nil {
				return fmt.Errorf("cache: removing orphan blob: %w", err)
			}
		}
	}

	// Rebuild recency: oldest at the back of the list.
	slices.SortFunc(live, func(a, b *entry) int {
		if a.access != b.access {
			return cmp.Compare(a.access, b.access)
		}
		return slices.Compare(a.key[:], b.key[:])
	})
	for _, e := range live {
		s.entries[e.key] = e
		e.elem = s.lru.PushFront(e)
		if !e.blob {
			s.bytes += e.size
		}
	}
	for h, n := range refs {
		s.blobs[h] = &blobRef{refs: n, size: files[h]}
		s.bytes += files[h]
	}

	// The cap may be lower than when the data was written.
	if s.cfg.maxBytes > 0 && s.bytes > s.cfg.maxBytes {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.mu.Lock()
		p := s.newPlan()
		p.evict(s.cfg.maxBytes)
		s.mu.Unlock()
		if err := s.commit(p); err != nil {
			return fmt.Errorf("cache: evicting down to the %d-byte cap in %s: %w", s.cfg.maxBytes, s.dbPath, err)
		}
	}
	return nil
}

// scanBlobs creates the 256 fan-out directories (so Put never has to create
// and fsync one), removes leftover temp files and returns the size of every
// well-named blob file. Files we did not name are left alone.
func (s *Store) scanBlobs() (map[[32]byte]int64, error) {
	created := false
	for i := range 256 {
		d := filepath.Join(s.blobDir, fmt.Sprintf("%02x", i))
		err := os.Mkdir(d, 0o755)
		if err == nil {
			created = true
		} else if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cache: creating %s: %w; check the cache directory's permissions", d, err)
		}
	}
	if created {
		if err := syncDir(s.blobDir); err != nil {
			return nil, fmt.Errorf("cache: syncing %s: %w", s.blobDir, err)
		}
	}

	files := map[[32]byte]int64{}
	for i := range 256 {
		sub := fmt.Sprintf("%02x", i)
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
			var h [32]byte
			if len(name) != 64 || !strings.HasPrefix(name, sub) || !de.Type().IsRegular() {
				continue
			}
			if _, err := hex.Decode(h[:], []byte(name)); err != nil || hex.EncodeToString(h[:]) != name {
				continue // not lowercase hex, so not ours
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

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ErrLocked matches (errors.Is) Open's error when another process holds the
// cache, so that a caller can say what to do instead (face0 run names the
// server holding it, --no-cache and --cache).
var ErrLocked = errors.New("cache is locked by another process")

type lockedError struct{ msg string }

func (e lockedError) Error() string        { return e.msg }
func (e lockedError) Is(target error) bool { return target == ErrLocked }
