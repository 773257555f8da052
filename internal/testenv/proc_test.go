package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDieWithTest starts a child test binary that starts a long sleep through
// DieWithTest and is then killed with SIGKILL, as a test binary past its
// timeout would be: the sleep must die with it.
func TestDieWithTest(t *testing.T) {
	if os.Getenv("TESTENV_PARENT") == "1" {
		cmd := DieWithTest(exec.Command("sleep", "300"))
		cmd.SysProcAttr.Setpgid = true // the attributes it had are kept
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("child " + strconv.Itoa(cmd.Process.Pid) + "\n")
		time.Sleep(time.Hour)
		return
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestDieWithTest$")
	parent.Env = append(os.Environ(), "TESTENV_PARENT=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	var line strings.Builder
	buf := make([]byte, 1)
	for !strings.HasSuffix(line.String(), "\n") {
		if _, err := out.Read(buf); err != nil {
			t.Fatalf("the parent test binary said %q and stopped: %v", line.String(), err)
		}
		line.WriteByte(buf[0])
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line.String(), "child ")))
	if err != nil {
		t.Fatalf("parent said %q", line.String())
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// The sleep is not our child: once dead, it is reaped by init and
		// its /proc entry goes; a zombie counts as dead too.
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d started with DieWithTest still runs 30 s after its parent was killed", pid)
		}
	}
}
