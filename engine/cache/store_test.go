package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustFlush(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestKeyStringParse(t *testing.T) {
	k := testKey("x")
	tests := []struct {
		name    string
		in      string
		want    Key
		wantErr bool
	}{
		{name: "round trip", in: k.String(), want: k},
		{name: "upper case", in: strings.ToUpper(k.String()), want: k},
		{name: "zero", in: strings.Repeat("0", 64), want: Key{}},
		{name: "too short", in: k.String()[:62], wantErr: true},
		{name: "too long", in: k.String() + "00", wantErr: true},
		{name: "not hex", in: "zz" + k.String()[2:], wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseKey(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseKey(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
	if s := k.String(); s != strings.ToLower(s) || len(s) != 64 {
		t.Fatalf("String() = %q, want 64 lowercase hex characters", s)
	}
}

func TestRoundTrip(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name       string
		size       int
		wantInline bool
	}{
		{"empty", 0, true},
		{"small", 10, true},
		{"at inline limit", limit, true},
		{"just over inline limit", limit + 1, false},
		{"1 MiB", 1 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, WithInlineLimit(limit))
			k, v := testKey(tt.name), testValue(tt.name, tt.size)
			if err := s.Put(k, v, "node/x@1"); err != nil {
				t.Fatal(err)
			}
			// Read once while the value is pending (served from memory)
			// and once durable (read back from disk and verified).
			for _, stage := range []string{"pending", "durable"} {
				if stage == "durable" {
					mustFlush(t, s)
				}
				if info, _ := s.Info(k); info.Pending != (stage == "pending") {
					t.Fatalf("%s: Info.Pending = %v", stage, info.Pending)
				}
				got, ok, err := s.Get(k)
				if err != nil || !ok {
					t.Fatalf("%s: Get = ok %v, err %v; want a hit", stage, ok, err)
				}
				if string(got) != string(v) {
					t.Fatalf("%s: Get returned different bytes (len %d, want %d)", stage, len(got), len(v))
				}
				if got == nil {
					t.Fatalf("%s: Get returned a nil slice for a hit; want non-nil even when empty", stage)
				}
			}
			info, ok := s.Info(k)
			if !ok || info.Inline != tt.wantInline || info.Size != int64(tt.size) || info.Producer != "node/x@1" {
				t.Fatalf("Info = %+v, %v; want inline=%v size=%d producer node/x@1", info, ok, tt.wantInline, tt.size)
			}
			files := blobFiles(t, dir)
			if tt.wantInline && len(files) != 0 {
				t.Fatalf("inline value left blob files %v", files)
			}
			if !tt.wantInline {
				if _, err := os.Stat(blobPathFor(dir, v)); err != nil {
					t.Fatalf("blob file missing: %v", err)
				}
			}
			st := s.Stats()
			if st.Entries != 1 || st.Bytes != int64(tt.size) || st.Hits != 2 || st.Misses != 0 || st.Pending != 0 {
				t.Fatalf("Stats = %+v; want 1 entry, %d bytes, 2 hits, nothing pending", st, tt.size)
			}
		})
	}
}

func TestReturnedValueIsACopy(t *testing.T) {
	// Put takes ownership of its value, but every Get result is the
	// caller's own: mutating one changes neither the cache nor other
	// results, whether the value is still pending or durable.
	s := openTest(t, t.TempDir())
	k := testKey("k")
	mustPut(t, s, k, []byte("hello"))
	for _, stage := range []string{"pending", "durable"} {
		if stage == "durable" {
			mustFlush(t, s)
		}
		got, _, _ := s.Get(k)
		got[1] = 'A'
		mustGet(t, s, k, true, []byte("hello"))
	}
}

func TestMissDeleteReplace(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, WithInlineLimit(16))
	k := testKey("k")

	mustGet(t, s, k, false, nil)
	if err := s.Delete(k); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}

	v1, v2 := testValue("v1", 100), testValue("v2", 50)
	mustPut(t, s, k, v1)
	mustFlush(t, s)
	mustPut(t, s, k, v2)
	mustGet(t, s, k, true, v2)
	mustFlush(t, s)
	if _, err := os.Stat(blobPathFor(dir, v1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replaced blob still on disk (stat err %v)", err)
	}
	if st := s.Stats(); st.Entries != 1 || st.Bytes != 50 || st.Blobs != 1 {
		t.Fatalf("Stats after replace = %+v; want 1 entry, 1 blob, 50 bytes", st)
	}

	if err := s.Delete(k); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, k, false, nil)
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Fatalf("blob files left after Delete: %v", files)
	}
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 || st.Misses != 2 || st.Hits != 1 {
		t.Fatalf("Stats = %+v; want empty store, 2 misses, 1 hit", st)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	opts := []Option{WithClock(clk.Now), WithInlineLimit(64), WithFlushInterval(0)}
	small, big := testKey("small"), testKey("big")
	vs, vb := testValue("s", 10), testValue("b", 100_000)

	s := openTest(t, dir, opts...)
	created := clk.Now()
	mustPut(t, s, small, vs)
	mustPut(t, s, big, vb)
	accessed := clk.Advance(time.Hour)
	mustGet(t, s, big, true, vb) // not flushed explicitly: Close must persist it
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, dir, opts...)
	after := s.Stats()
	if after.Entries != before.Entries || after.Bytes != before.Bytes || after.Blobs != before.Blobs {
		t.Fatalf("after reopen Stats = %+v, before = %+v", after, before)
	}
	for _, tc := range []struct {
		k          Key
		v          []byte
		lastAccess time.Time
	}{{small, vs, created}, {big, vb, accessed}} {
		info, ok := s.Info(tc.k)
		if !ok {
			t.Fatalf("%s missing after reopen", tc.k)
		}
		if !info.Created.Equal(created) || !info.LastAccess.Equal(tc.lastAccess) || info.Producer != "test" {
			t.Fatalf("Info(%s) = %+v; want created %v, last access %v", tc.k, info, created, tc.lastAccess)
		}
		mustGet(t, s, tc.k, true, tc.v)
	}
}

func corruptions() []struct {
	name   string
	damage func(t *testing.T, path string)
} {
	return []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"flipped byte", func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, p string) {
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
	}
}

func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	// A small cap keeps eviction running concurrently with everything else.
	s := openTest(t, dir, WithMaxBytes(400_000), WithInlineLimit(1024), WithFlushInterval(time.Millisecond))
	const keys = 40
	// Values depend only on the key (several keys share one), so any hit can
	// be checked for the exact bytes.
	valueFor := func(i int) []byte {
		sizes := []int{10, 900, 5_000, 60_000}
		return testValue(fmt.Sprint("v", i%10), sizes[i%10%len(sizes)])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			for n := range 300 {
				i := (g*7 + n*13) % keys
				k := testKey(fmt.Sprint("k", i))
				var err error
				switch n % 5 {
				case 0, 1:
					err = s.Put(k, valueFor(i), "p")
				case 2, 3:
					var got []byte
					var ok bool
					got, ok, err = s.Get(k)
					if err == nil && ok && string(got) != string(valueFor(i)) {
						err = fmt.Errorf("Get(k%d) returned wrong bytes", i)
					}
				case 4:
					if n%10 == 4 {
						err = s.Delete(k)
					} else {
						_ = s.Stats()
						err = s.Flush()
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	st := s.Stats()
	if st.Corrupt != 0 {
		t.Errorf("Corrupt = %d under concurrency; eviction races were mistaken for damage", st.Corrupt)
	}
	if st.Bytes > 400_000 {
		t.Errorf("Bytes = %d, over the cap", st.Bytes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The on-disk state must agree with what memory said.
	s = openTest(t, dir, WithMaxBytes(400_000), WithInlineLimit(1024))
	re := s.Stats()
	if re.Entries != st.Entries || re.Bytes != st.Bytes || re.Blobs != st.Blobs || re.Corrupt != 0 {
		t.Fatalf("after reopen Stats = %+v; before close %+v", re, st)
	}
	if files := blobFiles(t, dir); len(files) != re.Blobs {
		t.Fatalf("%d blob files on disk, index says %d", len(files), re.Blobs)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	mustPut(t, s, testKey("k"), []byte("v"))

	start := time.Now()
	s2, err := Open(dir, WithLockTimeout(100*time.Millisecond))
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked cache succeeded")
	}
	wantErrContaining(t, err, dir, "another face0 process holds the cache")
	if !errors.Is(err, ErrLocked) {
		t.Errorf("the locked cache's error is not ErrLocked: %v", err)
	}
	// Far above 100ms, so a loaded machine does not fail it, and far below
	// the default 2s lock timeout or a wait without end, which it catches.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second Open took %v; the lock timeout was 100ms", d)
	}
	if _, err := Open(dir, WithLockTimeout(0)); err == nil {
		t.Fatal("WithLockTimeout(0) Open of a locked cache succeeded")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := openTest(t, dir, WithLockTimeout(100*time.Millisecond))
	mustGet(t, s3, testKey("k"), true, []byte("v"))
}

func TestBadDirectory(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	blobsFile := filepath.Join(base, "blobsfile")
	if err := os.MkdirAll(blobsFile, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blobsFile, "blobs"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(base, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		dir    string
		want   []string
		asRoot bool // root ignores permission bits, so the case cannot fail
	}{
		{name: "empty", dir: "", want: []string{"no cache directory"}, asRoot: true},
		{name: "dir is a file", dir: file, want: []string{file, "not a directory"}, asRoot: true},
		{name: "parent is a file", dir: filepath.Join(file, "cache"), want: []string{filepath.Join(file, "cache")}, asRoot: true},
		{name: "blobs is a file", dir: blobsFile, want: []string{filepath.Join(blobsFile, "blobs"), "not a directory"}, asRoot: true},
		{name: "read-only dir", dir: readOnly, want: []string{readOnly, "not writable"}},
		{name: "inside read-only dir", dir: filepath.Join(readOnly, "cache"), want: []string{filepath.Join(readOnly, "cache"), "cannot create"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.asRoot && os.Geteuid() == 0 {
				t.Skip("running as root: permission bits are not enforced")
			}
			s, err := Open(tt.dir)
			if err == nil {
				s.Close()
			}
			wantErrContaining(t, err, tt.want...)
		})
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"negative cap", WithMaxBytes(-1), "WithMaxBytes"},
		{"negative inline limit", WithInlineLimit(-1), "WithInlineLimit"},
		{"nil clock", WithClock(nil), "WithClock"},
		{"negative lock timeout", WithLockTimeout(-time.Second), "WithLockTimeout"},
		{"negative flush interval", WithFlushInterval(-time.Second), "WithFlushInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), tt.opt)
			if err == nil {
				s.Close()
			}
			wantErrContaining(t, err, tt.want)
		})
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
	k := testKey("k")
	_, _, getErr := s.Get(k)
	for name, err := range map[string]error{
		"Get": getErr, "Put": s.Put(k, nil, ""), "Delete": s.Delete(k), "Flush": s.Flush(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
}
