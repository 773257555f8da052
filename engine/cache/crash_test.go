package cache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/face0/face0/internal/testenv"
)

// The test binary doubles as the child processes these tests kill or expect
// to survive damage: FACE0_CACHE_CHILD names the role.
func TestMain(m *testing.M) {
	dir, arg := os.Getenv(childDirEnv), os.Getenv(childArgEnv)
	switch os.Getenv(childModeEnv) {
	case "":
		os.Exit(m.Run())
	case "verify":
		childVerify(dir, arg)
	case "crash":
		crashChild(dir)
	case "putloop":
		putLoopChild(dir)
	default:
		fmt.Println("unknown child mode")
		os.Exit(2)
	}
}

// crashChild makes a batch durable, puts more values without waiting for
// them, reads some (so access times are pending too) and SIGKILLs itself: no
// Close, no deferred cleanup.
func crashChild(dir string) {
	s, err := Open(dir, WithInlineLimit(1024), WithFlushInterval(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range 40 {
		if err := s.Put(testKey(fmt.Sprint(i)), testValue(fmt.Sprint(i), crashSize(i)), "child"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i == 19 {
			if err := s.Flush(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
	}
	for i := range 30 {
		if _, ok, err := s.Get(testKey(fmt.Sprint(i))); !ok || err != nil {
			fmt.Fprintln(os.Stderr, "child Get failed", ok, err)
			os.Exit(2)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute) // not reached
}

func crashSize(i int) int {
	if i%2 == 0 {
		return 100 // inline
	}
	return 20_000 + i // blob
}

func TestCrashWithoutClose(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"=crash", childDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (err %v); output:\n%s", err, out)
	}

	// The kernel released the dead process's lock. Everything flushed must
	// be there and intact; what was put after may be lost, never wrong.
	s := openTest(t, dir, WithLockTimeout(time.Second), WithInlineLimit(1024))
	present := 0
	for i := range 40 {
		k, v := testKey(fmt.Sprint(i)), testValue(fmt.Sprint(i), crashSize(i))
		if i < 20 {
			mustGet(t, s, k, true, v)
		} else if _, ok := s.Info(k); ok {
			mustGet(t, s, k, true, v)
		}
		if _, ok := s.Info(k); ok {
			present++
		}
	}
	st := s.Stats()
	if st.Entries != present || st.Corrupt != 0 {
		t.Fatalf("Stats after crash = %+v; want %d entries, nothing corrupt", st, present)
	}
	if files := blobFiles(t, dir); len(files) != st.Blobs {
		t.Fatalf("blob files after crash = %v; want exactly the %d referenced", files, st.Blobs)
	}
}

// putLoopChild puts values forever, in the pattern stepKey and stepContent
// describe, and prints "durable N" after each Flush: every step before N is
// durable. The parent kills it at a moment of its choosing.
func putLoopChild(dir string) {
	s, err := Open(dir, WithInlineLimit(1024), WithFlushInterval(0), WithLog(os.Stderr))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	start, _ := strconv.Atoi(os.Getenv(childArgEnv))
	for i := start; ; i++ {
		if err := s.Put(stepKey(i), stepContent(i), "loop"); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		if i%25 == 24 {
			if err := s.Flush(); err != nil {
				fmt.Println(err)
				os.Exit(2)
			}
			fmt.Printf("durable %d\n", i+1)
		}
	}
}

// Step i puts stepContent(i) under stepKey(i): mostly a key of its own, every
// fourth step one of three hot keys that are overwritten again and again, and
// every tenth step the previous step's content under a new key (a shared blob).
func stepKey(i int) Key {
	if i%4 == 0 {
		return testKey(fmt.Sprint("hot-", i%3))
	}
	return testKey(fmt.Sprint("step-", i))
}

func stepContentID(i int) int {
	if i%10 == 9 {
		return i - 1
	}
	return i
}

// stepContent starts with its content id, so a value read back says which
// step wrote it.
func stepContent(i int) []byte {
	c := stepContentID(i)
	size := []int{100, 5000, 40_000}[c%3]
	v := binary.LittleEndian.AppendUint64(nil, uint64(c))
	return append(v, testValue(fmt.Sprint("content-", c), size)...)
}

// checkSteps opens dir after a crash and checks every key the steps below
// upto may have written: durable steps (below durable) must be present, with
// hot keys holding a value at least as new as their last durable write; any
// value present must be exactly one that step wrote under that key.
func checkSteps(t *testing.T, dir string, durable, upto int) {
	t.Helper()
	s := openTest(t, dir, WithLockTimeout(2*time.Second), WithInlineLimit(1024), WithLog(testLog{t}))
	writer := func(k Key, got []byte) int {
		if len(got) < 8 {
			return -1
		}
		c := int(binary.LittleEndian.Uint64(got))
		for _, i := range []int{c, c + 1} {
			if stepKey(i) == k && stepContentID(i) == c && bytes.Equal(got, stepContent(i)) {
				return i
			}
		}
		return -1
	}
	lastDurable := map[Key]int{}
	for i := range upto {
		k := stepKey(i)
		if i < durable {
			lastDurable[k] = i
		}
		if i%4 == 0 && i >= 3 {
			continue // hot keys are checked once below
		}
		got, ok, err := s.Get(k)
		if err != nil {
			t.Fatalf("Get(step %d): %v", i, err)
		}
		switch w := writer(k, got); {
		case ok && w < 0:
			t.Fatalf("step %d's key holds %d bytes no step wrote under it", i, len(got))
		case !ok && i < durable && i%4 != 0:
			t.Fatalf("step %d was flushed before the crash but is missing", i)
		}
	}
	for h := range 3 {
		k := testKey(fmt.Sprint("hot-", h))
		got, ok, err := s.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		last, wasDurable := lastDurable[k]
		switch w := writer(k, got); {
		case ok && w < 0:
			t.Fatalf("hot key %d holds %d bytes no step wrote under it", h, len(got))
		case wasDurable && !ok:
			t.Fatalf("hot key %d was flushed (step %d) but is missing", h, last)
		case wasDurable && w < last:
			t.Fatalf("hot key %d holds step %d's value, older than the flushed step %d", h, w, last)
		}
	}
	st := s.Stats()
	if st.Corrupt != 0 {
		t.Fatalf("Stats after crash = %+v; want nothing corrupt", st)
	}
	if files := blobFiles(t, dir); len(files) != st.Blobs {
		t.Fatalf("%d blob files after the crash; the index references %d", len(files), st.Blobs)
	}
}

// killDuringPuts starts a put loop, kills it with SIGKILL once at least
// target steps are durable (after delay), and returns how many steps were
// durable for sure and an upper bound on the steps it may have started.
func killDuringPuts(t *testing.T, dir string, start, target int, delay time.Duration) (durable, upto int) {
	t.Helper()
	cmd := testenv.DieWithTest(exec.Command(os.Args[0], "-test.run=^$"))
	cmd.Env = append(os.Environ(), childModeEnv+"=putloop", childDirEnv+"="+dir, childArgEnv+"="+strconv.Itoa(start))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	durable = start
	sc := bufio.NewScanner(stdout)
	for durable < target && sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "durable "))
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child said %q; stderr:\n%s", sc.Text(), stderr.Bytes())
		}
		durable = n
	}
	time.Sleep(delay)
	cmd.Process.Signal(syscall.SIGKILL)
	for sc.Scan() { // what it printed before dying
		if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "durable ")); err == nil {
			durable = n
		}
	}
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child exited on its own (%v); stderr:\n%s", cmd.ProcessState, stderr.Bytes())
	}
	// The child cannot have got further than a full pending bound past the
	// last durable step; steps are small, so this is generous.
	return durable, durable + 200_000
}

func TestKillDuringPutsLosesOnlyRecentEntries(t *testing.T) {
	dir := t.TempDir()
	durable, upto := killDuringPuts(t, dir, 0, 100, 0)
	checkSteps(t, dir, durable, min(upto, durable+5000))
}

// testLog sends the store's warnings to the test log.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", bytes.TrimSpace(p))
	return len(p), nil
}

func TestPutReturnsBeforeDurable(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, WithInlineLimit(1024))
	small, big := testKey("small"), testKey("big")
	vs, vb := testValue("s", 100), testValue("b", 50_000)

	s.batchMu.Lock() // white-box: hold the writer still
	mustPut(t, s, small, vs)
	mustPut(t, s, big, vb)
	// Visible at once, from memory.
	for _, k := range []Key{small, big} {
		if info, ok := s.Info(k); !ok || !info.Pending {
			t.Fatalf("Info = %+v, %v; want a pending entry", info, ok)
		}
	}
	mustGet(t, s, small, true, vs)
	mustGet(t, s, big, true, vb)
	onDisk := func() (n int) {
		s.mu.Lock()
		db := s.idx.db
		s.mu.Unlock()
		db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketEntries).Stats().KeyN; return nil })
		return n
	}
	if n, files := onDisk(), blobFiles(t, dir); n != 0 || len(files) != 0 {
		t.Fatalf("before the writer ran: %d index entries and blob files %v; want nothing on disk", n, files)
	}
	s.batchMu.Unlock()

	mustFlush(t, s)
	if n, files := onDisk(), blobFiles(t, dir); n != 2 || len(files) != 1 {
		t.Fatalf("after Flush: %d index entries and blob files %v; want 2 and 1", n, files)
	}
	if info, _ := s.Info(big); info.Pending {
		t.Fatal("entry still pending after Flush")
	}
	if st := s.Stats(); st.Pending != 0 || st.PendingBytes != 0 {
		t.Fatalf("Stats = %+v; want nothing pending", st)
	}
	mustGet(t, s, big, true, vb)
}

func TestPendingBytesBounded(t *testing.T) {
	s := openTest(t, t.TempDir(), WithMaxPending(1000), WithInlineLimit(100))
	a, b := testKey("a"), testKey("b")
	s.batchMu.Lock()
	mustPut(t, s, a, testValue("a", 600))
	done := make(chan error, 1)
	go func() { done <- s.Put(b, testValue("b", 600), "test") }()
	// The second Put must wait for room rather than exceed the bound.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		waiting := s.waiters
		s.mu.Unlock()
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a Put over the pending bound never waited")
		}
	}
	if st := s.Stats(); st.PendingBytes != 600 {
		t.Fatalf("Stats = %+v; want 600 pending bytes", st)
	}
	if _, ok := s.Info(b); ok {
		t.Fatal("the waiting Put's value is already visible")
	}
	s.batchMu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustFlush(t, s)
	mustGet(t, s, a, true, nil)
	mustGet(t, s, b, true, nil)

	// One value larger than the bound still goes in, alone.
	huge := testKey("huge")
	mustPut(t, s, huge, testValue("huge", 5000))
	mustFlush(t, s)
	mustGet(t, s, huge, true, nil)
}

func TestFailedBackgroundWriteDropsValue(t *testing.T) {
	// The index commit fails after the blob was renamed into place (here:
	// the index was closed underneath the store). The value must be dropped,
	// not served as if cached, its blob file removed, the failure reported
	// by Flush and logged.
	dir := t.TempDir()
	var log testenv.Buffer
	s := openTest(t, dir, WithLog(&log))
	good, gv := testKey("good"), testValue("good", 30_000)
	mustPut(t, s, good, gv)
	mustFlush(t, s)

	s.batchMu.Lock()
	if err := s.idx.db.Close(); err != nil { // white-box: break the index
		t.Fatal(err)
	}
	s.batchMu.Unlock()
	k, v := testKey("k"), testValue("v", 50_000)
	if err := s.Put(k, v, "test"); err != nil {
		t.Fatalf("Put = %v; want nil: the write happens in the background", err)
	}
	wantErrContaining(t, s.Flush(), "index.db")
	if files := blobFiles(t, dir); len(files) != 1 {
		t.Fatalf("blob files after the failed write = %v; want only the earlier one", files)
	}
	if _, ok := s.Info(k); ok {
		t.Fatal("the value that could not be written is still listed")
	}
	mustGet(t, s, k, false, nil)
	if !strings.Contains(log.String(), "not cached") {
		t.Fatalf("log = %q; want a warning that results were not cached", log.String())
	}
}
