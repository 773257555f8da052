package host_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/face0/face0/plugins/host"
)

// envKilledHost makes the test binary a host that starts the test pack found
// in the folder it names, says "ready" and waits to be killed.
const envKilledHost = "FACE0_TEST_KILLED_HOST"

func runHostUntilKilled(bin string) {
	_, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(bin, "testpack")}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// socketFolders lists the plugin socket folders in dir.
func socketFolders(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "face0-plugin-") {
			names = append(names, e.Name())
		}
	}
	return names
}

// A host killed with SIGKILL cannot remove its plugins' socket folders (its
// plugins die with it); 4,250 had piled up in /tmp in a day of kill -9
// tests. The next host start removes the folders of hosts that no longer
// run, and of earlier versions' folders (no owner in the name) those whose
// sockets nobody listens on any more; it leaves alone the folders of a host
// that runs and a socket that still answers.
func TestSocketsOfAKilledHostAreSwept(t *testing.T) {
	// A short folder: under a long one, socket folders go to /tmp.
	tmp, err := os.MkdirTemp("/tmp", "fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)

	child := osexec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envKilledHost+"="+binDir)
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test binary
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever fails below, the host (and with it its plugin) goes.
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("the host to kill did not start: %q, %v", line, err)
	}
	killed := socketFolders(t, tmp)
	if len(killed) != 1 {
		t.Fatalf("socket folders of the host to kill: %v, want one", killed)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	// A live host's folder, made before the sweep.
	live, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	defer live.Close()
	liveFolders := socketFolders(t, tmp)

	// Folders as earlier versions named them, old enough to be swept: one
	// whose socket's listener is gone, one whose listener still answers.
	old := time.Now().Add(-2 * time.Hour)
	legacy := func(name string, listening bool) {
		dir := filepath.Join(tmp, name)
		os.Mkdir(dir, 0o700)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "plugin123"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if listening {
			t.Cleanup(func() { l.Close() })
		} else {
			l.SetUnlinkOnClose(false)
			l.Close()
		}
		os.Chtimes(dir, old, old)
	}
	legacy("face0-plugin-111", false)
	legacy("face0-plugin-222", true)

	next, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	defer next.Close()
	left := strings.Join(socketFolders(t, tmp), " ")
	if strings.Contains(left, killed[0]) {
		t.Errorf("the killed host's socket folder %s is still there", killed[0])
	}
	for _, f := range liveFolders {
		if !strings.Contains(left, f) {
			t.Errorf("a running host's socket folder %s was removed", f)
		}
	}
	if strings.Contains(left, "face0-plugin-111") {
		t.Error("an earlier version's folder whose socket nobody listens on is still there")
	}
	if !strings.Contains(left, "face0-plugin-222") {
		t.Error("an earlier version's folder whose socket still answers was removed")
	}
}
