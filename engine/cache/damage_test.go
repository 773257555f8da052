package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A damaged index.db must never crash the process: bbolt reads it through a
// memory map, so a truncated file faults (SIGBUS) and a garbage page panics.
// Each case runs in a child process (the test binary again, see TestMain), so
// that a crash fails the test instead of killing the test binary.

const (
	fixtureN           = 200
	childModeEnv       = "FACE0_CACHE_CHILD"
	childDirEnv        = "FACE0_CACHE_CHILD_DIR"
	childArgEnv        = "FACE0_CACHE_CHILD_ARG"
	childVerifiedMark  = "child verified"
	childWrongDataMark = "WRONG DATA"
)

// fixture is entry i of the test index: small inline values, inline values
// big enough to need overflow pages, and blobs.
func fixture(i int) (Key, []byte) {
	name := fmt.Sprint("fixture-", i)
	size := []int{100, 10_000, 40_000}[i%3]
	return testKey(name), testValue(name, size)
}

func writeFixture(t testing.TB, dir string) {
	t.Helper()
	s := openTest(t, dir)
	for i := range fixtureN {
		k, v := fixture(i)
		mustPut(t, s, k, v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// runChild runs the test binary as a child in mode on dir and returns its
// combined output. A child that crashes or exits non-zero fails the test.
func runChild(t *testing.T, mode, dir, arg string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childDirEnv+"="+dir, childArgEnv+"="+arg)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(childVerifiedMark)) {
		t.Fatalf("child %s (%s) failed: %v; output:\n%s", mode, arg, err, tail(out))
	}
	if bytes.Contains(out, []byte("goroutine ")) || bytes.Contains(out, []byte("panic:")) {
		t.Fatalf("child %s (%s) printed a Go stack trace:\n%s", mode, arg, tail(out))
	}
	return string(out)
}

// tail keeps a crash's first lines (the reason) and last lines short.
func tail(b []byte) []byte {
	if len(b) > 3000 {
		return append(append(b[:1500:1500], "\n...\n"...), b[len(b)-1500:]...)
	}
	return b
}

// childVerify opens the cache (optionally damaging index.db first, while it
// is open, per arg), reads every fixture entry, and checks that each hit is
// exactly right and that the cache still works afterwards.
func childVerify(dir, arg string) {
	fail := func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
		os.Exit(3)
	}
	// Damage that makes bbolt allocate without bound must fail this child,
	// not exhaust the machine's memory.
	limit := uint64(3 << 30)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fail("setrlimit: %v", err)
	}
	s, err := Open(dir)
	if err != nil {
		fail("Open: %v", err)
	}
	if arg != "" {
		damageIndex(dir, arg, fail)
	}
	hits := 0
	for i := range fixtureN {
		k, v := fixture(i)
		got, ok, err := s.Get(k)
		if err != nil {
			fail("Get(%d): %v", i, err)
		}
		if ok && !bytes.Equal(got, v) {
			fail("%s: Get(%d) returned %d bytes that differ from what was stored", childWrongDataMark, i, len(got))
		}
		if ok {
			hits++
		}
	}
	k, v := testKey("after"), testValue("after", 20_000)
	if err := s.Put(k, v, "child"); err != nil {
		fail("Put after damage: %v", err)
	}
	if err := s.Flush(); err != nil {
		fail("Flush after damage: %v", err)
	}
	if got, ok, err := s.Get(k); !ok || err != nil || !bytes.Equal(got, v) {
		fail("Get after damage: ok %v, err %v", ok, err)
	}
	if err := s.Close(); err != nil {
		fail("Close: %v", err)
	}
	fmt.Printf("%s hits=%d\n", childVerifiedMark, hits)
	os.Exit(0)
}

// damageIndex damages dir/index.db as named by how ("truncate:N" keeps N
// bytes; "garbage:inline" overwrites the leaf page holding fixture 1).
func damageIndex(dir, how string, fail func(string, ...any)) {
	path := filepath.Join(dir, "index.db")
	kind, arg, _ := strings.Cut(how, ":")
	switch kind {
	case "truncate":
		n, _ := strconv.ParseInt(arg, 10, 64)
		if err := os.Truncate(path, n); err != nil {
			fail("truncate: %v", err)
		}
	case "page": // page:ID:SEED overwrites page ID with garbage
		idS, seedS, _ := strings.Cut(arg, ":")
		id, _ := strconv.ParseInt(idS, 10, 64)
		seed, _ := strconv.ParseUint(seedS, 10, 64)
		var tb childTB
		f := readBoltFile(&tb, path)
		overwritePage(&tb, path, f.pageSize, id, seed)
	case "freelist": // garbage over the freelist page in force
		var tb childTB
		f := readBoltFile(&tb, path)
		overwritePage(&tb, path, f.pageSize, f.freelist, 11)
	case "garbage":
		var tb childTB
		f := readBoltFile(&tb, path)
		_, v := fixture(1)
		p := f.pageHolding(&tb, v[:64])
		overwritePage(&tb, path, f.pageSize, p.id, 7)
		if tb.failed != "" {
			fail("damaging: %s", tb.failed)
		}
	default:
		fail("unknown damage %q", how)
	}
}

// childTB lets the page helpers run outside a test.
type childTB struct {
	testing.TB
	failed string
}

func (c *childTB) Helper() {}
func (c *childTB) Fatal(args ...any) {
	c.failed = fmt.Sprint(args...)
	fmt.Println("damaging failed:", c.failed)
	os.Exit(4)
}
func (c *childTB) Fatalf(format string, args ...any) { c.Fatal(fmt.Sprintf(format, args...)) }

// indexDamages are the ways a damaged index.db shows up at Open.
func indexDamages() []struct {
	name   string
	damage func(t *testing.T, path string)
} {
	truncate := func(n func(size int64) int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, n(fi.Size())); err != nil {
				t.Fatal(err)
			}
		}
	}
	garbagePages := func(pick func(f *boltFile) []int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			f := readBoltFile(t, path)
			ids := pick(f)
			if len(ids) == 0 {
				t.Fatal("no page of that kind in the fixture index")
			}
			for i, id := range ids {
				overwritePage(t, path, f.pageSize, id, uint64(i+1))
			}
		}
	}
	ids := func(ps []boltPage) []int64 {
		var out []int64
		for _, p := range ps {
			out = append(out, p.id)
		}
		return out
	}
	return []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated to half", truncate(func(n int64) int64 { return n / 2 / 4096 * 4096 })},
		{"truncated mid-page", truncate(func(n int64) int64 { return n/2/4096*4096 + 123 })},
		{"truncated to the meta pages", truncate(func(int64) int64 { return 2 * 4096 })},
		{"truncated inside a meta page", truncate(func(int64) int64 { return 100 })},
		{"garbage freelist page", garbagePages(func(f *boltFile) []int64 { return []int64{f.freelist} })},
		{"garbage branch pages", garbagePages(func(f *boltFile) []int64 { return ids(f.pagesOf(pageBranch)) })},
		{"garbage leaf holding an inline value", garbagePages(func(f *boltFile) []int64 {
			_, v := fixture(1)
			return []int64{f.pageHolding(t0{}, v[:64]).id}
		})},
		// Valid pages whose overflow count is huge: bbolt would free
		// billions of page ids at the first commit that touches them.
		{"inflated overflow counts of branch pages", inflateOverflow(func(f *boltFile) []int64 { return ids(f.pagesOf(pageBranch)) })},
		{"inflated overflow count of the freelist page", inflateOverflow(func(f *boltFile) []int64 { return []int64{f.freelist} })},
		{"garbage meta pages", garbagePages(func(*boltFile) []int64 { return []int64{0, 1} })},
		{"all garbage", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, garbage(99, fi.Size()), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
}

// inflateOverflow sets a huge overflow count on the pages pick chooses,
// leaving them otherwise valid.
func inflateOverflow(pick func(f *boltFile) []int64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		f := readBoltFile(t, path)
		file, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		for _, id := range pick(f) {
			if _, err := file.WriteAt([]byte{0xf0, 0xff, 0xff, 0x7f}, id*f.pageSize+12); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// t0 is a TB for helpers whose failure cannot happen on the fixture.
type t0 struct{ testing.TB }

func (t0) Helper()                   {}
func (t0) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (t0) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// wantMovedAside checks that the child warned about the damaged index and
// left it beside the fresh one, and that no blob file outlived its index.
func wantMovedAside(t *testing.T, dir, out string) {
	t.Helper()
	if !strings.Contains(out, "cache: ") || !strings.Contains(out, "moved it to "+filepath.Join(dir, "index.db.damaged")) {
		t.Fatalf("child did not warn that the damaged index was moved aside; output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.db.damaged")); err != nil {
		t.Fatalf("damaged index not kept aside: %v", err)
	}
	s := openTest(t, dir, WithLog(testLog{t}))
	if st, files := s.Stats(), blobFiles(t, dir); st.Entries != 1 || len(files) != 1 {
		t.Fatalf("after the damaged index was replaced: Stats %+v, blob files %v; want only the child's new entry", st, files)
	}
}

func TestDamagedIndexAtOpen(t *testing.T) {
	for _, tt := range indexDamages() {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFixture(t, dir)
			tt.damage(t, filepath.Join(dir, "index.db"))
			out := runChild(t, "verify", dir, "")
			wantMovedAside(t, dir, out)
			t.Log(strings.TrimSpace(out))
		})
	}
}

func TestDamagedIndexAtRead(t *testing.T) {
	for _, how := range []string{"truncate:0", "truncate:100", "truncate:8192", "truncate:20000", "garbage:inline", "freelist"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			writeFixture(t, dir)
			out := runChild(t, "verify", dir, how)
			wantMovedAside(t, dir, out)
			t.Log(strings.TrimSpace(out))
		})
	}
}

func TestCorruptBlobOnGet(t *testing.T) {
	for _, tt := range corruptions() {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			k1, k2, other := testKey("k1"), testKey("k2"), testKey("other")
			v := testValue("v", 100_000)
			mustPut(t, s, k1, v)
			mustPut(t, s, k2, v) // shares the damaged blob
			mustPut(t, s, other, testValue("other", 100_000))
			mustFlush(t, s)
			tt.damage(t, blobPathFor(dir, v))

			got, ok, err := s.Get(k1)
			if err != nil || ok || got != nil {
				t.Fatalf("Get of corrupt blob = (%d bytes, %v, %v); want a plain miss", len(got), ok, err)
			}
			for _, k := range []Key{k1, k2} {
				if _, ok := s.Info(k); ok {
					t.Fatalf("entry %s referring to the corrupt blob is still indexed", k)
				}
			}
			if st := s.Stats(); st.Corrupt != 2 || st.Misses != 1 || st.Entries != 1 {
				t.Fatalf("Stats = %+v; want Corrupt 2, 1 miss, 1 entry left", st)
			}
			mustFlush(t, s)
			if _, err := os.Stat(blobPathFor(dir, v)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt blob still on disk (stat err %v)", err)
			}
			mustGet(t, s, other, true, nil)

			// Re-caching the same content must rewrite the blob rather
			// than deduplicate against the damaged copy.
			mustPut(t, s, k1, v)
			mustFlush(t, s)
			mustGet(t, s, k1, true, v) // read from disk and verified
		})
	}
}

func TestCorruptInlineRecordDropped(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	k := testKey("k")
	mustPut(t, s, k, []byte("hello"))
	mustFlush(t, s)
	// Remove the inline value behind the store's back.
	if err := s.idx.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketInline).Delete(k[:]) }); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, k, false, nil)
	if st := s.Stats(); st.Corrupt != 1 || st.Entries != 0 {
		t.Fatalf("Stats = %+v; want Corrupt 1 and no entries", st)
	}
}

func TestCorruptBlobFoundOnOpen(t *testing.T) {
	for _, tt := range corruptions() {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			k, good := testKey("k"), testKey("good")
			v := testValue("v", 100_000)
			mustPut(t, s, k, v)
			mustPut(t, s, good, testValue("good", 100_000))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, blobPathFor(dir, v))

			s = openTest(t, dir)
			// A flipped byte keeps the size, so only Get can notice it;
			// size and existence problems are caught by Open.
			mustGet(t, s, k, false, nil)
			mustGet(t, s, good, true, nil)
			if st := s.Stats(); st.Corrupt != 1 || st.Entries != 1 || st.Blobs != 1 {
				t.Fatalf("Stats = %+v; want Corrupt 1, 1 entry, 1 blob", st)
			}
		})
	}
}

func TestOpenCleansOrphansAndTempFiles(t *testing.T) {
	// These files are what a crash leaves: a blob renamed into place whose
	// index transaction never committed, a blob whose last reference was
	// committed away but which was not yet deleted, and half-written temps.
	dir := t.TempDir()
	s := openTest(t, dir)
	k := testKey("k")
	v := testValue("kept", 50_000)
	mustPut(t, s, k, v)
	gone := testKey("gone")
	mustPut(t, s, gone, testValue("deleted", 50_000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Drop the index entry only, as if the crash came after the commit.
	s = openTest(t, dir)
	if err := s.idx.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Delete(gone[:]) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	orphan := testValue("orphan", 40_000)
	orphanPath := blobPathFor(dir, orphan)
	write := func(p string, b []byte) {
		// Its fan-out directory exists only once a blob was written there.
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(orphanPath, orphan)
	tempPath := filepath.Join(filepath.Dir(orphanPath), tmpPrefix+"12345")
	write(tempPath, orphan[:100])
	foreign := filepath.Join(dir, "blobs", "00", "NOTES.txt")
	write(foreign, []byte("not ours"))

	s = openTest(t, dir)
	for _, p := range []string{orphanPath, tempPath, blobPathFor(dir, testValue("deleted", 50_000))} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open (stat err %v)", p, err)
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("Open removed a file it did not create: %v", err)
	}
	mustGet(t, s, k, true, v)
	if st := s.Stats(); st.Blobs != 1 || st.Entries != 1 || st.Bytes != int64(len(v)) || st.Corrupt != 0 {
		t.Fatalf("Stats = %+v; want 1 entry, 1 blob of %d bytes, nothing corrupt", st, len(v))
	}
}
