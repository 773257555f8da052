//go:build soak

package cache

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copyDir copies a cache directory, so each damage case starts from the same
// fixture without rebuilding it.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every page of index.db, overwritten with garbage, found at Open and found
// by a read while the store is open: never a crash, never a wrong value, and
// the store works afterwards.
func TestSoakIndexPageSweep(t *testing.T) {
	fixtureDir := t.TempDir()
	writeFixture(t, fixtureDir)
	f := readBoltFile(t, filepath.Join(fixtureDir, "index.db"))
	pages := int64(len(f.data)) / f.pageSize
	t.Logf("sweeping %d pages", pages)
	for id := range pages {
		for _, atRead := range []bool{false, true} {
			dir := t.TempDir()
			copyDir(t, fixtureDir, dir)
			seed := uint64(id + 1)
			if atRead {
				runChild(t, "verify", dir, fmt.Sprintf("page:%d:%d", id, seed))
			} else {
				overwritePage(t, filepath.Join(dir, "index.db"), f.pageSize, id, seed)
				runChild(t, "verify", dir, "")
			}
		}
	}
}

// Single flipped bytes anywhere in index.db: the damage a bad disk does.
func TestSoakIndexByteFlips(t *testing.T) {
	fixtureDir := t.TempDir()
	writeFixture(t, fixtureDir)
	path := filepath.Join(fixtureDir, "index.db")
	size := int64(len(readBoltFile(t, path).data))
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		dir := t.TempDir()
		copyDir(t, fixtureDir, dir)
		b, err := os.ReadFile(filepath.Join(dir, "index.db"))
		if err != nil {
			t.Fatal(err)
		}
		off := r.Int64N(size)
		b[off] ^= byte(1 + r.IntN(255))
		if err := os.WriteFile(filepath.Join(dir, "index.db"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		runChild(t, "verify", dir, "")
	}
}

// Truncation at every page boundary and at odd offsets.
func TestSoakIndexTruncations(t *testing.T) {
	fixtureDir := t.TempDir()
	writeFixture(t, fixtureDir)
	f := readBoltFile(t, filepath.Join(fixtureDir, "index.db"))
	size := int64(len(f.data))
	for n := int64(0); n < size; n += f.pageSize / 2 {
		dir := t.TempDir()
		copyDir(t, fixtureDir, dir)
		if err := os.Truncate(filepath.Join(dir, "index.db"), n+n%7); err != nil {
			t.Fatal(err)
		}
		runChild(t, "verify", dir, "")
		dir = t.TempDir()
		copyDir(t, fixtureDir, dir)
		runChild(t, "verify", dir, fmt.Sprintf("truncate:%d", n+n%7))
	}
}

// Many kill -9 rounds at random moments of a put stream: every flushed value
// survives, nothing wrong is ever served, no blob file is left unaccounted.
func TestSoakKillDuringPuts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 60 {
		dir := t.TempDir()
		target := 25 * (1 + r.IntN(20))
		delay := time.Duration(r.IntN(30)) * time.Millisecond
		durable, upto := killDuringPuts(t, dir, 0, target, delay)
		t.Logf("round %d: killed %v after step %d was durable", round, delay, durable)
		checkSteps(t, dir, durable, min(upto, durable+20_000))
	}
}
