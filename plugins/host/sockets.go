package host

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/face0/face0/plugins/procid"
)

// SweepSockets removes the plugin socket folders that hosts killed with
// SIGKILL left behind (their plugins die with them, through Pdeathsig, but
// nobody removes the folders): those whose host no longer runs, in the
// temporary folder and in /tmp, where socketDir makes them. A folder named
// by an earlier version carries no host; it is removed when it is older than
// an hour and none of its sockets answers. Start calls it.
func SweepSockets() {
	seen := map[string]bool{}
	for _, dir := range []string{os.TempDir(), "/tmp"} {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			rest, ok := strings.CutPrefix(name, socketPrefix)
			if !ok || !e.IsDir() {
				continue
			}
			path := filepath.Join(dir, name)
			id, _, _ := strings.Cut(rest, "-")
			if owner, ok := procid.Parse(id); ok {
				if !owner.Alive() {
					os.RemoveAll(path)
				}
				continue
			}
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour && !answers(path) {
				os.RemoveAll(path)
			}
		}
	}
}

// answers reports whether a socket in dir still has a listener (or might:
// anything but a refused connection counts as an answer).
func answers(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		c, err := net.DialTimeout("unix", filepath.Join(dir, e.Name()), time.Second)
		if err == nil {
			c.Close()
			return true
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return true
		}
	}
	return false
}
