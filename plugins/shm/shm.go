// Package shm moves large tensors between host and plugins through files in
// shared memory (/dev/shm) instead of through the gRPC stream, with at most
// one copy per crossing:
//
//   - A plugin writes an output tensor into a new file with one write and
//     names the file in its response (WriteOutputs). An output that is an
//     unchanged input is not written at all: the input's file is named.
//   - The host maps each named file read-only and hands it on to the next
//     plugin by name (Host): it reads tensor bytes only when something asks
//     for them, such as the cache.
//   - A plugin maps its input files copy-on-write (MapInputs): a node reads
//     the host's pages directly, and its writes stay its own.
//
// A 16 MB latent sent inline is copied about six times (marshal, HTTP/2
// frames, socket, read buffer, reassembly, unmarshal). Both ends are on one
// machine by construction: the host starts its plugins.
//
// Lifetimes. A file is valid only once named in a completed response: a
// plugin that dies mid-write leaves a file no one reads, removed by the next
// sweep. The host owns what it receives (it moves the file under its own
// name) and keeps it mapped and unchanged until it is released; a tensor's
// Data is a view of that mapping. Names carry their owner's PID and start
// time, so a sweep never removes a file whose owner runs, and a kernel lease
// proves no process has a file open before anything is removed or reused.
package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	pb "github.com/face0/face0/plugins/proto"
)

// Threshold is the tensor size from which data goes through shared memory.
// Below it the stream is cheaper than a file.
const Threshold = 1 << 20

// DirEnv names a folder to use instead of /dev/shm, for tests and for
// several face0 installations that must not see each other's files. The
// host's plugins inherit it.
const DirEnv = "FACE0_SHM_DIR"

// Dir is where the files live: $FACE0_SHM_DIR if set, /dev/shm when present,
// else the temp folder.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return filepath.Clean(d)
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// Remove deletes files, ignoring those already gone.
func Remove(files []string) {
	for _, f := range files {
		os.Remove(f)
	}
}

// cleanPath checks a file name that came from the other side: only face0
// shared-memory files may be named, so that a misbehaving peer cannot make
// this process read (or remove) arbitrary files.
func cleanPath(name string) (string, error) {
	clean := filepath.Clean(name)
	if filepath.Dir(clean) != Dir() || !strings.HasPrefix(filepath.Base(clean), prefix) {
		return "", fmt.Errorf("refusing tensor file %q: not a face0 shared-memory file", name)
	}
	return clean, nil
}

// openTensorFile opens a named tensor file read-only and checks it is a
// regular file of this user holding at least need bytes (exactly need when
// exact). It never follows a link and never waits on another process's lease.
func openTensorFile(path string, need int64, exact bool) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return -1, st, fmt.Errorf("tensor data went missing: %s no longer exists", path)
	case errors.Is(err, unix.ELOOP):
		return -1, st, fmt.Errorf("refusing tensor file %s: not a regular file", path)
	case errors.Is(err, unix.EWOULDBLOCK):
		return -1, st, fmt.Errorf("refusing tensor file %s: another process holds a lease on it", path)
	case err != nil:
		return -1, st, fmt.Errorf("open tensor file: %w", err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, fmt.Errorf("open tensor file: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("refusing tensor file %s: not a regular file", path)
	case st.Uid != uint32(os.Geteuid()):
		err = fmt.Errorf("refusing tensor file %s: it belongs to another user", path)
	case st.Size < need || (exact && st.Size != need):
		err = fmt.Errorf("tensor needs %d bytes, its file %s has %d", need, path, st.Size)
	}
	if err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// byteSize is what a tensor's dtype and shape need.
func byteSize(t *pb.Tensor) (int64, error) {
	var el int64
	switch t.Dtype {
	case pb.Tensor_UINT8:
		el = 1
	case pb.Tensor_FLOAT16:
		el = 2
	case pb.Tensor_FLOAT32, pb.Tensor_INT32:
		el = 4
	case pb.Tensor_INT64:
		el = 8
	default:
		return 0, fmt.Errorf("tensor dtype %s is not supported", t.Dtype)
	}
	n := el
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > (1<<40)/d) {
			return 0, fmt.Errorf("tensor shape %v is invalid", t.Shape)
		}
		n *= d
	}
	return n, nil
}
