package shm

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/face0/face0/plugins/procid"
	"golang.org/x/sys/unix"
)

// Every file's name says which process made it and so owns it:
//
//	face0-shm-<pid>.<start>-<random>       a tensor a plugin wrote for its host
//	face0-shm-pool-<pid>.<start>-<random>  a file a host keeps (its input pool,
//	                                       and every tensor it received)
//	face0-shm-free-<pid>.<start>-<random>  a released file the host handed
//	                                       back to the plugin that made it,
//	                                       whose pages it may reuse
//
// where start is the process's start time (clock ticks since boot, from
// /proc/<pid>/stat), so that a reused PID does not make a dead owner look
// alive. A receiver reads a pool file without removing it; this is also what
// plugins built with earlier SDKs do, so they can read anything a host sends.
//
// Names without the owner (face0-shm-<hex>, face0-shm-pool-<hex>) come from
// earlier versions.
const (
	prefix     = "face0-shm-"
	poolPrefix = prefix + "pool-"
	freePrefix = prefix + "free-"
)

// kind is what a file's name says of its use.
type kind int

const (
	oneShot kind = iota // a plugin's output on its way to the host
	kept                // the host's: receivers read it and never remove it
	free                // handed back to its maker, for reuse
)

// owner identifies a file's maker across PID reuse.
type owner = procid.ID

// self is this process.
func self() owner { return procid.Self() }

// newName returns a fresh path of kind k owned by this process.
func newName(k kind) string { return nameFor(k, self()) }

func nameFor(k kind, o owner) string {
	var r [8]byte
	rand.Read(r[:])
	p := map[kind]string{oneShot: prefix, kept: poolPrefix, free: freePrefix}[k]
	tail := hex.EncodeToString(r[:])
	if k == oneShot {
		tail = reuseMark + tail
	}
	return filepath.Join(Dir(), p+o.String()+"-"+tail)
}

// reuseMark starts the random part of an output's name when its maker takes
// released files back for reuse (this package does; a plugin written
// otherwise may not, and then its files are simply removed).
const reuseMark = "r"

// takesBack reports whether a one-shot file's maker reuses released files.
func takesBack(base string) bool {
	_, tail, _ := strings.Cut(strings.TrimPrefix(base, prefix), "-")
	return strings.HasPrefix(tail, reuseMark)
}

// parseName splits a file's base name into its kind and owner. ok is false
// for names of earlier versions, which carry no owner.
func parseName(base string) (k kind, o owner, ok bool) {
	rest, found := strings.CutPrefix(base, prefix)
	if !found {
		return oneShot, owner{}, false
	}
	if r, found := strings.CutPrefix(rest, "pool-"); found {
		rest, k = r, kept
	} else if r, found := strings.CutPrefix(rest, "free-"); found {
		rest, k = r, free
	}
	id, _, found := strings.Cut(rest, "-")
	if !found {
		return k, owner{}, false
	}
	o, ok = procid.Parse(id)
	return k, o, ok
}

// Sweep removes files that processes left behind: it never removes a file
// whose owner still runs, nor one that any process has open or mapped (a
// kernel lease proves that). Files of earlier versions, which carry no owner,
// must also be older than age.
func Sweep(age time.Duration) { sweep(age, false) }

// SweepDead removes the files of owners that have exited and that no process
// uses, such as what a plugin that crashed mid-write left. Cheap enough to
// call after every crash.
func SweepDead() { sweep(0, true) }

func sweep(age time.Duration, ownedOnly bool) {
	entries, err := os.ReadDir(Dir())
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !e.Type().IsRegular() {
			continue
		}
		_, o, ok := parseName(name)
		switch {
		case ok && o.Alive():
			continue
		case !ok && ownedOnly:
			continue
		case !ok:
			info, err := e.Info()
			if err != nil || time.Since(info.ModTime()) <= age {
				continue
			}
		}
		removeUnused(filepath.Join(Dir(), name))
	}
}

// removeUnused removes path unless some process has it open or mapped. Where
// leases are unavailable the owner's death (or the age) must do.
func removeUnused(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if free, supported := unused(fd); supported && !free {
		return
	}
	os.Remove(path)
}

// unused reports whether the open file fd is open nowhere else: no other
// descriptor and no mapping, in any process (fd itself, read-only or not, is
// allowed for). It asks the kernel for a write lease, granted only then, and
// gives it back at once. supported is false where leases are off or not
// permitted.
func unused(fd int) (free, supported bool) { return leaseCheck(fd, unix.F_WRLCK) }

// noWriters reports whether no process has the file open for writing,
// including through a writable shared mapping.
func noWriters(fd int) (ok, supported bool) { return leaseCheck(fd, unix.F_RDLCK) }

func leaseCheck(fd int, kind int) (granted, supported bool) {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, kind)
	switch err {
	case nil:
		unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return true, true
	case unix.EAGAIN, unix.EBUSY:
		return false, true
	}
	return false, false
}
