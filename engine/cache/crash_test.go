package cache

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv makes the test binary act as a face0 process that writes to
// the cache and is then killed without closing it.
const crashChildEnv = "FACE0_CACHE_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild stores values, reads some of them (so access times are pending,
// never flushed) and SIGKILLs itself: no Close, no deferred cleanup.
func crashChild(dir string) {
	s, err := Open(dir, WithInlineLimit(1024), WithFlushInterval(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range 20 {
		if err := s.Put(testKey(fmt.Sprint(i)), testValue(fmt.Sprint(i), crashSize(i)), "child"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	for i := range 10 {
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
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (err %v); output:\n%s", err, out)
	}

	// The kernel released the dead process's lock; every committed Put
	// must be readable and intact.
	s := openTest(t, dir, WithLockTimeout(time.Second), WithInlineLimit(1024))
	for i := range 20 {
		mustGet(t, s, testKey(fmt.Sprint(i)), true, testValue(fmt.Sprint(i), crashSize(i)))
	}
	if st := s.Stats(); st.Entries != 20 || st.Corrupt != 0 || st.Blobs != 10 {
		t.Fatalf("Stats after crash = %+v; want 20 entries, 10 blobs, nothing corrupt", st)
	}
	if files := blobFiles(t, dir); len(files) != 10 {
		t.Fatalf("blob files after crash = %v; want exactly the 10 referenced", files)
	}
}

func TestPutIndexFailureLeavesNoBlob(t *testing.T) {
	// Simulates the index commit failing after the blob was renamed into
	// place: Put must report it and not leave an unreferenced file behind.
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.db.Close(); err != nil { // white-box: break the index
		t.Fatal(err)
	}
	k := testKey("k")
	err := s.Put(k, testValue("v", 50_000), "test")
	wantErrContaining(t, err, k.String(), "index.db")
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Fatalf("blob files after failed Put = %v; want none", files)
	}
	if _, ok := s.Info(k); ok {
		t.Fatal("failed Put left an in-memory entry")
	}
}
