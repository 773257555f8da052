// Package procid names a process so that the name outlives PID reuse: its
// PID and its start time (clock ticks since boot, from /proc/<pid>/stat).
// Files that a process leaves behind (shared-memory tensors, plugin socket
// folders) carry their maker's ID, so that a later process can tell whether
// the maker still runs before it removes them: a reused PID has another start
// time, so a dead owner never looks alive.
package procid

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ID identifies a process across PID reuse. The zero ID is no process.
type ID struct {
	PID   int
	Start uint64
}

var self = sync.OnceValue(func() ID {
	pid := os.Getpid()
	start, _, _ := stat(pid)
	return ID{PID: pid, Start: start}
})

// Self is this process.
func Self() ID { return self() }

// String is "pid.start", the form Parse reads and file names carry.
func (id ID) String() string { return fmt.Sprintf("%d.%d", id.PID, id.Start) }

// Parse reads "pid.start"; ok is false for anything else.
func Parse(s string) (id ID, ok bool) {
	pidS, startS, found := strings.Cut(s, ".")
	if !found {
		return ID{}, false
	}
	pid, err1 := strconv.Atoi(pidS)
	start, err2 := strconv.ParseUint(startS, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return ID{}, false
	}
	return ID{PID: pid, Start: start}, true
}

// Alive reports whether the process still runs (the same one: same start).
// A zombie has exited: it only waits for its parent to notice.
func (id ID) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	start, state, err := stat(id.PID)
	return err == nil && start == id.Start && state != "Z" && state != "X"
}

// stat reads the state (field 3) and start time (field 22) of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func stat(pid int) (start uint64, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0], err
}
