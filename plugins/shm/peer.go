package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Inputs are the tensors of one request that live in files, mapped for the
// length of one call: the plugin side of the transfers.
type Inputs struct {
	maps []inputMap
}

type inputMap struct {
	path string
	mem  []byte
}

// MapInputs gives every tensor of values that lives in a file a Data that
// maps the file, copy-on-write: nothing is read until the node reads it, and
// a node that writes into its input changes only its own copy. Call Close
// when the call is over; the mappings end then.
func MapInputs(values map[string]*pb.Value) (*Inputs, error) {
	in := &Inputs{}
	var err error
	for _, v := range values {
		value.EachTensor(v, func(t *pb.Tensor) {
			if err != nil || t.ShmFile == "" {
				return
			}
			var mem []byte
			var path string
			if path, mem, err = mapInput(t); err == nil {
				t.Data, t.ShmFile = mem, ""
				in.maps = append(in.maps, inputMap{path: path, mem: mem})
			}
		})
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

func mapInput(t *pb.Tensor) (string, []byte, error) {
	path, err := cleanPath(t.ShmFile)
	if err != nil {
		return "", nil, err
	}
	need, err := byteSize(t)
	if err != nil {
		return "", nil, err
	}
	fd, _, err := openTensorFile(path, need, false)
	if err != nil {
		return "", nil, err
	}
	defer unix.Close(fd)
	mem, err := mapFile(fd, need, true)
	if err != nil {
		return "", nil, err
	}
	if k, _, _ := parseName(filepath.Base(path)); k != kept {
		// A one-shot file is the receiver's to remove (the mapping stays).
		os.Remove(path)
		path = ""
	}
	return path, mem, nil
}

// Close ends the mappings. A node must not keep an input tensor's Data past
// its call (copy what it keeps): the range stays reserved and inaccessible,
// so such a read faults instead of reading another tensor.
func (in *Inputs) Close() {
	if in == nil {
		return
	}
	for _, m := range in.maps {
		retire(m.mem)
	}
	in.maps = nil
}

// unchanged returns the file an output's bytes were mapped from, if they are
// a whole input that no write has touched: the output is then that file.
func (in *Inputs) unchanged(data []byte) (string, bool) {
	if in == nil || len(data) == 0 {
		return "", false
	}
	for _, m := range in.maps {
		if m.path == "" || len(m.mem) != len(data) || unsafe.SliceData(m.mem) != unsafe.SliceData(data) {
			continue
		}
		if changed, ok := changed(m.mem); ok && !changed {
			return m.path, true
		}
	}
	return "", false
}

// WriteOutputs returns values ready for a response: every tensor of
// Threshold bytes or more is written into a new file of this process with
// one write, unless its bytes are an unchanged input, whose file is named
// instead. The input is not modified. Pass the files to Sent once the
// response is sent, or to Remove if it could not be.
func WriteOutputs(values map[string]*pb.Value, in *Inputs) (map[string]*pb.Value, []string, error) {
	var files []string
	out, err := value.RewriteTensorsIn(values, func(t *pb.Tensor) (*pb.Tensor, error) {
		if t.ShmFile != "" {
			return t, nil
		}
		if path, ok := in.unchanged(t.Data); ok {
			return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, ShmFile: path}, nil
		}
		if len(t.Data) < Threshold {
			return t, nil
		}
		path, err := writeFile(t.Data)
		if err != nil {
			return nil, err
		}
		files = append(files, path)
		return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, ShmFile: path}, nil
	})
	if err != nil {
		Remove(files)
		return nil, nil, err
	}
	return out, files, nil
}

// writeFile writes data into a file and closes it: the host accepts a file
// only when no process has it open for writing. It reuses a file the host
// handed back when there is one, as writing into pages that exist is twice
// as fast as into new ones; and it writes with write(2), measured twice as
// fast as faulting in the pages of a fresh shared mapping and copying.
func writeFile(data []byte) (string, error) {
	if path, ok := reuse(data); ok {
		return path, nil
	}
	path := newName(oneShot)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("shared memory: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("shared memory (is %s full?): %w", Dir(), err)
	}
	return path, nil
}

// reuse claims a file the host handed back to this process (renaming it is
// the claim: of two calls, one wins) and writes data into it, unless some
// process still has it open or mapped, as a plugin that kept an input past
// its call might: such a file is never written, only removed.
func reuse(data []byte) (string, bool) {
	entries, err := os.ReadDir(Dir())
	if err != nil {
		return "", false
	}
	mine := freePrefix + self().String() + "-"
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), mine) {
			continue
		}
		path := newName(oneShot)
		if unix.Renameat2(unix.AT_FDCWD, filepath.Join(Dir(), e.Name()), unix.AT_FDCWD, path, unix.RENAME_NOREPLACE) != nil {
			continue
		}
		if err := rewriteFile(path, data); err != nil {
			os.Remove(path)
			continue
		}
		return path, true
	}
	return "", false
}

func rewriteFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	if free, supported := unused(int(f.Fd())); !free || !supported {
		f.Close()
		return errors.New("in use")
	}
	err = f.Truncate(int64(len(data)))
	if err == nil {
		_, err = f.WriteAt(data, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// The host takes a file over (renames it) as soon as it reads the response
// naming it. A file still under its first name long after was never taken:
// the host cancelled the call, or went away. Sent keeps the names so that a
// janitor removes those.
var sent struct {
	sync.Mutex
	once  sync.Once
	files []sentFile
}

type sentFile struct {
	path string
	at   time.Time
}

// orphanAge is how long a sent file may wait for the host.
const orphanAge = 2 * time.Minute

// Sent records files named in a response that was sent.
func Sent(files []string) {
	if len(files) == 0 {
		return
	}
	sent.Lock()
	now := time.Now()
	for _, f := range files {
		sent.files = append(sent.files, sentFile{f, now})
	}
	sent.Unlock()
	sent.once.Do(func() {
		go func() {
			for range time.Tick(orphanAge / 4) {
				removeOrphans(time.Now().Add(-orphanAge))
			}
		}()
	})
}

// removeOrphans removes the sent files older than before that the host has
// not taken.
func removeOrphans(before time.Time) {
	sent.Lock()
	defer sent.Unlock()
	kept := sent.files[:0]
	for _, f := range sent.files {
		if f.at.After(before) {
			kept = append(kept, f)
			continue
		}
		os.Remove(f.path)
	}
	clear(sent.files[len(kept):])
	sent.files = kept
}
