package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/face0/face0/internal/testenv"
)

// A byte flipped anywhere in an entry (its value, its record or its key) must
// make that entry a miss, never a hit with wrong data or wrong details.
func TestFlippedByteInIndexIsAMiss(t *testing.T) {
	const producer = "producer/unique-name@1"
	tests := []struct {
		name string
		size int // inline at or under 16 KiB, a blob above
		// flip damages index.db and returns the key whose lookup must miss.
		flip func(t *testing.T, path string, k Key, v []byte) Key
	}{
		{"inline value", 2000, func(t *testing.T, path string, k Key, v []byte) Key {
			flipAll(t, path, v[:64], 10)
			return k
		}},
		{"inline value at the limit", 16 << 10, func(t *testing.T, path string, k Key, v []byte) Key {
			flipAll(t, path, v[len(v)-64:], 63)
			return k
		}},
		{"record of an inline value", 2000, func(t *testing.T, path string, k Key, v []byte) Key {
			flipAll(t, path, []byte(producer), 3)
			return k
		}},
		{"record of a blob", 50_000, func(t *testing.T, path string, k Key, v []byte) Key {
			flipAll(t, path, []byte(producer), 3)
			return k
		}},
		{"key of a blob", 50_000, func(t *testing.T, path string, k Key, v []byte) Key {
			flipAll(t, path, k[:], 5)
			k[5] ^= 0x5a // the entry now claims to be this other key
			return k
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			k, v := testKey(tt.name), testValue(tt.name, tt.size)
			other, ov := testKey("other"), testValue("other", 3000)
			if err := s.Put(k, v, producer); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, other, ov)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			lookup := tt.flip(t, filepath.Join(dir, "index.db"), k, v)

			var log testenv.Buffer
			s = openTest(t, dir, WithLog(&log))
			got, ok, err := s.Get(lookup)
			if err != nil {
				t.Fatalf("Get after damage: %v", err)
			}
			if ok {
				info, _ := s.Info(lookup)
				t.Fatalf("Get of a damaged entry was a hit (%d bytes, equal to the stored value: %v; producer %q); want a miss",
					len(got), string(got) == string(v), info.Producer)
			}
			if st := s.Stats(); st.Corrupt != 1 {
				t.Fatalf("Stats = %+v; want Corrupt 1", st)
			}
			// The user is told (a damaged record is found by Open, an
			// altered value by Get).
			if msg := log.String(); !strings.Contains(msg, "cache: ") || !strings.Contains(msg, "recomputed") {
				t.Fatalf("log = %q; want a warning about the dropped entry", msg)
			}
			mustGet(t, s, other, true, ov) // the rest of the index is fine
			// The node runs again and its result is cached afresh.
			if err := s.Put(lookup, v, producer); err != nil {
				t.Fatal(err)
			}
			mustGet(t, s, lookup, true, v)
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			mustGet(t, s, lookup, true, v) // now read back from disk
		})
	}
}

// writeFormat makes dir/index.db an index in the given format with one
// entry, plus a blob file, as an older or newer build would have left them.
func writeFormat(t *testing.T, dir string, version uint32) string {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEntries, bucketInline, bucketBlobs, bucketMeta} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		k := testKey("old")
		if err := tx.Bucket(bucketEntries).Put(k[:], []byte("an older record layout")); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, binary.LittleEndian.AppendUint32(nil, version))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	v := testValue("old blob", 30_000)
	name := fmt.Sprintf("%x", sha256.Sum256(v)) // format 1 named blobs by sha256
	blob := filepath.Join(dir, "blobs", name[:2], name)
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, v, 0o600); err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestOlderFormatIsCleared(t *testing.T) {
	dir := t.TempDir()
	blob := writeFormat(t, dir, 1)
	var log testenv.Buffer
	s := openTest(t, dir, WithLog(&log))
	if st := s.Stats(); st.Entries != 0 {
		t.Fatalf("Stats = %+v; want an empty cache", st)
	}
	if _, err := os.Stat(blob); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the older format's blob survived (stat err %v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.db.damaged")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an older format is not damage; nothing should be kept aside")
	}
	if !strings.Contains(log.String(), "older face0") || !strings.Contains(log.String(), "format 1") {
		t.Fatalf("log = %q; want a message naming the older format", log.String())
	}
	// It works, and stays in the current format.
	k, v := testKey("new"), testValue("new", 100)
	mustPut(t, s, k, v)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, WithLog(&log))
	mustGet(t, s, k, true, v)
}

func TestNewerFormatIsRefused(t *testing.T) {
	dir := t.TempDir()
	blob := writeFormat(t, dir, formatVersion+1)
	_, err := Open(dir, WithLog(testLog{t}))
	wantErrContaining(t, err, "newer", "index.db")
	if _, serr := os.Stat(blob); serr != nil {
		t.Fatalf("a newer build's cache was touched: %v", serr)
	}
}

func TestOpenReleasesLockOnError(t *testing.T) {
	dir := t.TempDir()
	writeFormat(t, dir, formatVersion+1)
	if _, err := Open(dir, WithLog(testLog{t})); err == nil {
		t.Fatal("Open of a newer format succeeded")
	}
	// A failed Open must not keep index.db locked.
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("index.db still locked after a failed Open: %v", err)
	}
	db.Close()
}

func TestDamagedBlobRewrittenWhenReusedInSameBatch(t *testing.T) {
	// The damaged blob is still referenced on disk when a new entry with the
	// same content arrives in the same batch as the removal of the old
	// ones: the writer must rewrite the file, not deduplicate against it.
	dir := t.TempDir()
	s := openTest(t, dir, WithLog(testLog{t}))
	k1, k2, k3 := testKey("k1"), testKey("k2"), testKey("k3")
	v := testValue("shared", 80_000)
	mustPut(t, s, k1, v)
	mustPut(t, s, k2, v)
	mustFlush(t, s)
	corruptions()[0].damage(t, blobPathFor(dir, v)) // flip a byte

	s.batchMu.Lock() // white-box: the drop and the Put go in one batch
	mustGet(t, s, k1, false, nil)
	mustPut(t, s, k3, v)
	s.batchMu.Unlock()
	mustFlush(t, s)

	if info, _ := s.Info(k3); info.Pending {
		t.Fatal("k3 still pending after Flush")
	}
	mustGet(t, s, k3, true, v) // from disk, verified
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, WithLog(testLog{t}))
	mustGet(t, s, k3, true, v)
	if st := s.Stats(); st.Entries != 1 || st.Blobs != 1 || st.Corrupt != 0 {
		t.Fatalf("Stats after reopen = %+v; want k3 alone, intact", st)
	}
}
