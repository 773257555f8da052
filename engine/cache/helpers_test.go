package cache

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// fakeClock is a manually advanced clock; each call to Now is stable until
// Advance, so tests can order accesses exactly.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func testKey(name string) Key { return Key(sha256.Sum256([]byte(name))) }

// testValue returns n deterministic bytes that differ per seed.
func testValue(seed string, n int) []byte {
	out := make([]byte, 0, n+32)
	block := sha256.Sum256([]byte(seed))
	for len(out) < n {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return out[:n]
}

func openTest(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPut(t testing.TB, s *Store, k Key, v []byte) {
	t.Helper()
	if err := s.Put(k, v, "test"); err != nil {
		t.Fatalf("Put(%s): %v", k, err)
	}
}

// mustGet asserts whether k is present and, if want is non-nil, its value.
func mustGet(t testing.TB, s *Store, k Key, wantOK bool, want []byte) {
	t.Helper()
	got, ok, err := s.Get(k)
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	if ok != wantOK {
		t.Fatalf("Get(%s) ok = %v, want %v", k, ok, wantOK)
	}
	if ok && want != nil && string(got) != string(want) {
		t.Fatalf("Get(%s) returned %d bytes that differ from the %d stored", k, len(got), len(want))
	}
}

// blobFiles lists the blob and temp files under dir/blobs, relative to it.
func blobFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(dir, "blobs")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return out
}

func blobPathFor(dir string, v []byte) string {
	name := fmt.Sprintf("%x", blake3.Sum256(v))
	return filepath.Join(dir, "blobs", name[:2], name)
}

func wantErrContaining(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
}
