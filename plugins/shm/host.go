package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Host is the host's side of the transfers, shared by all its plugins.
//
// A tensor a plugin returns in a file is received without being read: the
// Host takes the file over (it renames it to a name of its own), maps it
// read-only and gives the tensor a Data that views the mapping. When that
// tensor goes to another plugin, the Host sends the file's name, not its
// bytes. Tensors the host holds in ordinary memory (from the cache, or
// literals) are written once into files of its pool.
//
// Ownership is explicit: a received tensor's Data stays valid and unchanged
// until a value holding that tensor is passed to Release (or the Host is
// closed); Release sets its Data to nil. Detach makes copies that own their
// bytes, for results that must outlive the run. Go's garbage collector does
// not know about mappings: never keep a received tensor's Data past Release.
type Host struct {
	mu       sync.Mutex
	byTensor map[*pb.Tensor]*segment
	byName   map[string]*segment
	files    []*poolFile
	idle     int // pool files kept while no call uses them
	closed   bool
	removing sync.WaitGroup
}

// segment is one received file, mapped, shared by the tensors that view it.
type segment struct {
	path   string
	mem    []byte
	refs   int
	pooled bool  // one of the Host's pool files, sent and handed back unchanged
	maker  owner // the plugin that wrote it, if its name said
}

// maxFree bounds the released files handed back to one plugin for reuse.
const maxFree = 4

// poolFile is a file of the Host's pool. The Host holds it open for writing;
// it is reused only when no other process has it open or mapped, so a
// plugin that kept an input mapping past its call never sees it change.
type poolFile struct {
	f    *os.File
	lent bool // named in a request whose call has not ended
}

// NewHost keeps at most idle unused pool files between calls.
func NewHost(idle int) *Host {
	return &Host{byTensor: map[*pb.Tensor]*segment{}, byName: map[string]*segment{}, idle: idle}
}

// Send returns values ready for a request: every tensor the Host received is
// named by its file, and every other tensor of Threshold bytes or more is
// written into a pool file. Pass lent to Done when the call has ended. The
// input is not modified.
func (h *Host) Send(values map[string]*pb.Value) (out map[string]*pb.Value, lent []string, err error) {
	out, err = value.RewriteTensorsIn(values, func(t *pb.Tensor) (*pb.Tensor, error) {
		if t.ShmFile != "" {
			return t, nil
		}
		if path, ok := h.fileOf(t); ok {
			return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, ShmFile: path}, nil
		}
		if len(t.Data) < Threshold {
			return t, nil
		}
		path, err := h.write(t.Data)
		if err != nil {
			return nil, err
		}
		lent = append(lent, path)
		return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, ShmFile: path}, nil
	})
	if err != nil {
		h.Done(lent)
		return nil, nil, err
	}
	return out, lent, nil
}

// fileOf names the file a received tensor views, if its Data is still that
// view, whole.
func (h *Host) fileOf(t *pb.Tensor) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.byTensor[t]
	if s == nil || len(t.Data) != len(s.mem) || unsafe.SliceData(t.Data) != unsafe.SliceData(s.mem) {
		return "", false
	}
	return s.path, true
}

// write copies data into a pool file that no process uses.
func (h *Host) write(data []byte) (string, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return "", errors.New("shared memory: the host is closed")
	}
	var pf *poolFile
	for _, f := range h.files {
		if !f.lent && h.byName[f.f.Name()] == nil {
			if free, supported := unused(int(f.f.Fd())); free || !supported {
				pf = f
				break
			}
		}
	}
	if pf == nil {
		f, err := os.OpenFile(newName(kept), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			h.mu.Unlock()
			return "", fmt.Errorf("shared memory: %w", err)
		}
		pf = &poolFile{f: f}
		h.files = append(h.files, pf)
	}
	pf.lent = true
	h.mu.Unlock()
	if _, err := pf.f.WriteAt(data, 0); err != nil {
		h.Done([]string{pf.f.Name()})
		return "", fmt.Errorf("shared memory (is %s full?): %w", Dir(), err)
	}
	return pf.f.Name(), nil
}

// Done hands back the pool files of a call that has ended, keeping at most
// the idle bound of unused ones (the rest are removed, giving memory back).
func (h *Host) Done(lent []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range lent {
		for _, f := range h.files {
			if f.f.Name() == name {
				f.lent = false
			}
		}
	}
	idle := 0
	kept := h.files[:0]
	for _, f := range h.files {
		if !f.lent && h.byName[f.f.Name()] == nil {
			if idle++; idle > h.idle {
				if free, supported := unused(int(f.f.Fd())); free || !supported {
					f.f.Close()
					os.Remove(f.f.Name())
					continue
				}
			}
		}
		kept = append(kept, f)
	}
	clear(h.files[len(kept):])
	h.files = kept
}

// Receive takes over the files a plugin named in a completed response and
// gives every tensor in them a Data viewing the file, mapped read-only. On
// error nothing stays taken: what was received is released and the files
// the plugin made are removed.
func (h *Host) Receive(values map[string]*pb.Value) error {
	var err error
	for _, v := range values {
		value.EachTensor(v, func(t *pb.Tensor) {
			if t.ShmFile == "" {
				return
			}
			if err != nil {
				h.refuse(t.ShmFile)
				return
			}
			err = h.receive(t)
			if err != nil {
				h.refuse(t.ShmFile)
			}
		})
	}
	if err != nil {
		h.Release(values)
	}
	return err
}

func (h *Host) receive(t *pb.Tensor) error {
	path, err := cleanPath(t.ShmFile)
	if err != nil {
		return err
	}
	need, err := byteSize(t)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("shared memory: the host is closed")
	}
	s := h.byName[path]
	if s == nil {
		if s, err = h.adopt(path, need); err != nil {
			return err
		}
		h.byName[s.path] = s
	} else if need > int64(len(s.mem)) {
		return fmt.Errorf("tensor needs %d bytes, its file %s has %d", need, path, len(s.mem))
	}
	s.refs++
	t.Data, t.ShmFile = s.mem[:need:need], ""
	if need < int64(len(s.mem)) {
		// A view that is not the whole mapping is never named onwards.
		t.Data = append([]byte(nil), t.Data...)
		s.refs--
		return nil
	}
	h.byTensor[t] = s
	return nil
}

// adopt maps a file a plugin made (or one of the Host's own pool files that
// a plugin handed back unchanged) and, for a plugin's file, moves it under
// the Host's name. h.mu is held.
func (h *Host) adopt(path string, need int64) (*segment, error) {
	pooled := false
	for _, f := range h.files {
		if f.f.Name() == path {
			pooled = true
		}
	}
	if k, _, _ := parseName(filepath.Base(path)); k == kept && !pooled {
		return nil, fmt.Errorf("refusing tensor file %s: a plugin may name only files it made or was sent", path)
	}
	// A plugin's file holds exactly its tensor; a pool file may be longer.
	fd, st, err := openTensorFile(path, need, !pooled)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var maker owner
	if k, o, ok := parseName(filepath.Base(path)); ok && k == oneShot && takesBack(filepath.Base(path)) {
		maker = o
	}
	if !pooled {
		// The SDK closes its only writable descriptor before it answers;
		// a plugin that still holds one could change the tensor later.
		if ok, supported := noWriters(fd); supported && !ok {
			return nil, fmt.Errorf("refusing tensor file %s: the plugin still has it open for writing", path)
		}
		if st.Nlink != 1 {
			return nil, fmt.Errorf("refusing tensor file %s: it has other names", path)
		}
		mine := newName(kept)
		if err := unix.Renameat2(unix.AT_FDCWD, path, unix.AT_FDCWD, mine, unix.RENAME_NOREPLACE); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("tensor data went missing: %s no longer exists", path)
			}
			return nil, fmt.Errorf("take over tensor file: %w", err)
		}
		var now unix.Stat_t
		if err := unix.Stat(mine, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
			// Another file took the name between open and rename: give it back.
			unix.Renameat2(unix.AT_FDCWD, mine, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
			return nil, fmt.Errorf("refusing tensor file %s: it was replaced while being received", path)
		}
		path = mine
	}
	mem, err := mapFile(fd, need, false)
	if err != nil {
		if !pooled {
			os.Remove(path)
		}
		return nil, err
	}
	return &segment{path: path, mem: mem, pooled: pooled, maker: maker}, nil
}

// refuse removes a file a plugin named but the Host did not take: it is the
// plugin's (a pool file, or one taken already, is left alone).
func (h *Host) refuse(name string) {
	path, err := cleanPath(name)
	if err != nil {
		return
	}
	if k, _, _ := parseName(filepath.Base(path)); k == kept {
		return
	}
	h.mu.Lock()
	_, taken := h.byName[path]
	h.mu.Unlock()
	if !taken {
		os.Remove(path)
	}
}

// Release ends the life of every received tensor in values: its Data becomes
// nil, and a file no tensor views any more is unmapped and removed (or, for
// a pool file, handed back to the pool). Releasing twice is harmless.
func (h *Host) Release(values map[string]*pb.Value) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range values {
		value.EachTensor(v, func(t *pb.Tensor) {
			s := h.byTensor[t]
			if s == nil {
				return
			}
			delete(h.byTensor, t)
			t.Data = nil
			if s.refs--; s.refs == 0 {
				h.drop(s)
			}
		})
	}
}

func (h *Host) drop(s *segment) {
	unmap(s.mem)
	delete(h.byName, s.path)
	if s.pooled {
		return
	}
	// The file goes back to the plugin that wrote it, which writes its next
	// output into pages that exist (twice as fast as new ones); or it is
	// removed, which gives its pages back and takes as long as copying
	// them. Neither on the caller's (the scheduler's) time.
	closing := h.closed
	h.removing.Add(1)
	go func() {
		defer h.removing.Done()
		if !closing && s.maker.Alive() && countFree(s.maker) < maxFree {
			if unix.Renameat2(unix.AT_FDCWD, s.path, unix.AT_FDCWD, nameFor(free, s.maker), unix.RENAME_NOREPLACE) == nil {
				return
			}
		}
		os.Remove(s.path)
	}()
}

// countFree counts the files handed back to o.
func countFree(o owner) int {
	entries, err := os.ReadDir(Dir())
	if err != nil {
		return maxFree
	}
	n := 0
	p := freePrefix + o.String() + "-"
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), p) {
			n++
		}
	}
	return n
}

// Detach returns values whose tensors own their bytes: received tensors are
// copied into memory the garbage collector manages. The input is unchanged
// and still needs its Release.
func (h *Host) Detach(values map[string]*pb.Value) (map[string]*pb.Value, error) {
	return value.RewriteTensorsIn(values, func(t *pb.Tensor) (*pb.Tensor, error) {
		h.mu.Lock()
		s := h.byTensor[t]
		h.mu.Unlock()
		if s == nil {
			return t, nil
		}
		data := make([]byte, len(t.Data))
		if err := faultSafe(func() { copy(data, t.Data) }); err != nil {
			return nil, err
		}
		return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, Data: data}, nil
	})
}

// Stats counts the received files still mapped and the pool's files.
func (h *Host) Stats() (mapped, pool int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byName), len(h.files)
}

// Close unmaps and removes everything: received tensors' Data become nil.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for t := range h.byTensor {
		t.Data = nil
	}
	clear(h.byTensor)
	for _, s := range h.byName {
		h.drop(s)
	}
	for _, f := range h.files {
		f.f.Close()
		os.Remove(f.f.Name())
	}
	h.files = nil
	h.closed = true
	h.removing.Wait()
}
