package shm

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps the first n bytes of fd: shared and read-only for the host,
// which must see exactly what the plugin wrote; private and writable for a
// plugin's inputs, so that a node may scribble on its input (as it could on
// a copy) while the file stays as the host sent it (copy on write).
func mapFile(fd int, n int64, private bool) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	if n < 0 || n != int64(int(n)) {
		return nil, fmt.Errorf("cannot map %d bytes", n)
	}
	prot, flags := unix.PROT_READ, unix.MAP_SHARED
	if private {
		prot, flags = unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE
	}
	p, err := unix.MmapPtr(fd, 0, nil, uintptr(n), prot, flags)
	if err != nil {
		return nil, fmt.Errorf("map tensor file: %w", err)
	}
	return unsafe.Slice((*byte)(p), int(n)), nil
}

func unmap(b []byte) {
	if cap(b) > 0 {
		unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(cap(b)))
	}
}

// retired keeps the address ranges of a plugin's input mappings after their
// call: the file's pages are given back at once, but the range stays
// reserved, inaccessible, so that a node that kept a slice of its input past
// its call faults (and gets an error naming the mistake) instead of reading
// whatever the next mapping at that address holds. The oldest reservations
// are freed past a bound, as they cost address space and a kernel mapping.
var retired struct {
	sync.Mutex
	ranges []reservation
}

// reservation is an inaccessible address range outside the Go heap.
type reservation struct {
	addr unsafe.Pointer
	n    uintptr
}

const maxRetired = 512

// retire replaces the mapping b with an inaccessible reservation.
func retire(b []byte) {
	if cap(b) == 0 {
		return
	}
	addr := unsafe.Pointer(unsafe.SliceData(b))
	n := uintptr(cap(b))
	_, err := unix.MmapPtr(-1, 0, addr, n, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		unix.MunmapPtr(addr, n)
		return
	}
	retired.Lock()
	defer retired.Unlock()
	retired.ranges = append(retired.ranges, reservation{addr, n})
	if len(retired.ranges) > maxRetired {
		old := retired.ranges[0]
		retired.ranges = retired.ranges[1:]
		unix.MunmapPtr(old.addr, old.n)
	}
}

// Retired reports whether addr lies in the mapping of an input whose call has
// ended: a fault there means node code kept an input tensor past its call.
func Retired(addr uintptr) bool {
	retired.Lock()
	defer retired.Unlock()
	for _, r := range retired.ranges {
		if start := uintptr(r.addr); addr >= start && addr < start+r.n {
			return true
		}
	}
	return false
}

// pagemap is /proc/self/pagemap: one 64-bit entry per virtual page.
var pagemap struct {
	once sync.Once
	f    *os.File
}

// changed reports whether any page of the private mapping b differs from its
// file: written pages become anonymous copies (present, not file-backed) or,
// under memory pressure, swapped ones. Pages never touched are the file's.
// ok is false where /proc/self/pagemap cannot be read.
func changed(b []byte) (changed, ok bool) {
	pagemap.once.Do(func() { pagemap.f, _ = os.Open("/proc/self/pagemap") })
	if pagemap.f == nil || len(b) == 0 {
		return false, pagemap.f != nil
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	first, last := start/page, (start+uintptr(len(b))-1)/page
	buf := make([]byte, 8*1024)
	for p := first; p <= last; {
		n := min(uintptr(len(buf)/8), last-p+1)
		if _, err := pagemap.f.ReadAt(buf[:8*n], int64(p*8)); err != nil {
			return false, false
		}
		for i := uintptr(0); i < n; i++ {
			e := binary.LittleEndian.Uint64(buf[8*i:])
			present, swapped, file := e&(1<<63) != 0, e&(1<<62) != 0, e&(1<<61) != 0
			if swapped || (present && !file) {
				return true, true
			}
		}
		p += n
	}
	return false, true
}

// faultSafe runs f, turning a memory fault into an error. Reading a mapping
// faults if another process truncated its file; that must fail the read, not
// the process.
func faultSafe(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tensor data became unreadable (its shared-memory file was cut short by another process): %v", r)
		}
	}()
	f()
	return nil
}
