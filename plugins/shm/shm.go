// Package shm moves large tensors between host and plugin through files in
// shared memory (/dev/shm) instead of through the gRPC stream. A 16 MB latent
// sent inline is copied about six times (marshal, HTTP/2 frames, socket, read
// buffer, reassembly, unmarshal); through shared memory it is written once and
// read once. Both ends are on one machine by construction: the host starts its
// plugins.
package shm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pb "github.com/face0/face0/plugins/proto"
)

// Threshold is the tensor size from which data goes through shared memory.
// Below it the stream is cheaper than a file.
const Threshold = 1 << 20

const (
	prefix = "face0-shm-"
	// Files of a Pool keep their pages between transfers; the receiver reads
	// them but does not remove them.
	poolPrefix = prefix + "pool-"
)

// Dir is where the files live: /dev/shm when present, else the temp folder.
func Dir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// Externalize returns values with the data of every large tensor (nested
// lists and records included) moved into shared-memory files, and the files it
// created, so the sender can remove any the receiver did not consume (after a
// crash). The input is not modified: values may be shared with other nodes.
func Externalize(values map[string]*pb.Value) (map[string]*pb.Value, []string, error) {
	return externalizeWith(values, write)
}

func externalizeWith(values map[string]*pb.Value, write func([]byte) (string, error)) (map[string]*pb.Value, []string, error) {
	var files []string
	out := make(map[string]*pb.Value, len(values))
	for k, v := range values {
		nv, err := externalize(v, &files, write)
		if err != nil {
			Remove(files)
			return nil, nil, err
		}
		out[k] = nv
	}
	return out, files, nil
}

// externalize copies only the path down to each large tensor.
func externalize(v *pb.Value, files *[]string, write func([]byte) (string, error)) (*pb.Value, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Tensor:
		if len(k.Tensor.Data) < Threshold {
			return v, nil
		}
		name, err := write(k.Tensor.Data)
		if err != nil {
			return nil, err
		}
		*files = append(*files, name)
		t := &pb.Tensor{Dtype: k.Tensor.Dtype, Shape: k.Tensor.Shape, ShmFile: name}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_Tensor{Tensor: t}}, nil
	case *pb.Value_List:
		items := make([]*pb.Value, len(k.List.Items))
		for i, e := range k.List.Items {
			ne, err := externalize(e, files, write)
			if err != nil {
				return nil, err
			}
			items[i] = ne
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_List{List: &pb.List{Items: items}}}, nil
	case *pb.Value_Record:
		fields := make(map[string]*pb.Value, len(k.Record.Fields))
		for n, e := range k.Record.Fields {
			ne, err := externalize(e, files, write)
			if err != nil {
				return nil, err
			}
			fields[n] = ne
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_Record{Record: &pb.Record{Fields: fields}}}, nil
	}
	return v, nil
}

// Internalize reads back every tensor that lives in a shared-memory file and
// removes the file. It refuses paths that are not face0 shared-memory files, so
// a misbehaving peer cannot make the other side read arbitrary files.
func Internalize(values map[string]*pb.Value) error {
	var err error
	for _, v := range values {
		walk(v, func(t *pb.Tensor) {
			if err != nil || t.ShmFile == "" {
				return
			}
			var data []byte
			data, err = read(t)
			if err == nil {
				t.Data, t.ShmFile = data, ""
			}
		})
	}
	return err
}

// Remove deletes files, ignoring those already consumed.
func Remove(files []string) {
	for _, f := range files {
		os.Remove(f)
	}
}

// Sweep removes files older than age left by processes that died mid-transfer.
func Sweep(age time.Duration) {
	matches, _ := filepath.Glob(filepath.Join(Dir(), prefix+"*"))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && time.Since(st.ModTime()) > age {
			os.Remove(m)
		}
	}
}

func walk(v *pb.Value, f func(*pb.Tensor)) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Tensor:
		f(k.Tensor)
	case *pb.Value_List:
		for _, e := range k.List.Items {
			walk(e, f)
		}
	case *pb.Value_Record:
		for _, e := range k.Record.Fields {
			walk(e, f)
		}
	}
}

func write(data []byte) (string, error) {
	var r [12]byte
	rand.Read(r[:])
	name := filepath.Join(Dir(), prefix+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("shared memory: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("shared memory (is /dev/shm full?): %w", err)
	}
	return name, nil
}

func read(t *pb.Tensor) ([]byte, error) {
	name := t.ShmFile
	clean := filepath.Clean(name)
	if filepath.Dir(clean) != Dir() || !strings.HasPrefix(filepath.Base(clean), prefix) {
		return nil, fmt.Errorf("refusing tensor file %q: not a face0 shared-memory file", name)
	}
	st, err := os.Lstat(clean)
	if err != nil {
		return nil, fmt.Errorf("tensor data went missing: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("refusing tensor file: not a regular file")
	}
	if strings.HasPrefix(filepath.Base(clean), poolPrefix) {
		// A pooled file is longer than this tensor and stays for reuse.
		size, err := byteSize(t)
		if err != nil {
			return nil, err
		}
		if size > st.Size() {
			return nil, fmt.Errorf("tensor needs %d bytes, its file has %d", size, st.Size())
		}
		f, err := os.Open(clean)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		data := make([]byte, size)
		if _, err := f.ReadAt(data, 0); err != nil {
			return nil, fmt.Errorf("read tensor file: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(clean)
	os.Remove(clean)
	return data, err
}

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

// Pool reuses shared-memory files for one sender. Writing into a file whose
// pages already exist skips the kernel's page allocation and zeroing, which
// costs as much as the copy itself; the receiver reads without removing.
// A file is reused only after Release, that is after the call that carried it
// has ended and so the receiver has read it.
type Pool struct {
	mu    sync.Mutex
	free  []*os.File
	all   []*os.File
	limit int
}

// NewPool keeps at most limit idle files.
func NewPool(limit int) *Pool { return &Pool{limit: limit} }

// Externalize is the package Externalize, writing into pooled files. Pass the
// returned files to Release when the call has ended.
func (p *Pool) Externalize(values map[string]*pb.Value) (map[string]*pb.Value, []string, error) {
	return externalizeWith(values, p.write)
}

func (p *Pool) write(data []byte) (string, error) {
	p.mu.Lock()
	var f *os.File
	if n := len(p.free); n > 0 {
		f, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	if f == nil {
		var r [12]byte
		rand.Read(r[:])
		name := filepath.Join(Dir(), poolPrefix+hex.EncodeToString(r[:]))
		var err error
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("shared memory: %w", err)
		}
		p.mu.Lock()
		p.all = append(p.all, f)
		p.mu.Unlock()
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		p.Release([]string{f.Name()})
		return "", fmt.Errorf("shared memory (is /dev/shm full?): %w", err)
	}
	return f.Name(), nil
}

// Release returns files to the pool, keeping at most the pool's limit of
// idle files (the rest are removed so memory is given back).
func (p *Pool) Release(names []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range names {
		for _, f := range p.all {
			if f.Name() != n {
				continue
			}
			if len(p.free) < p.limit {
				p.free = append(p.free, f)
			} else {
				p.drop(f)
			}
		}
	}
}

func (p *Pool) drop(f *os.File) {
	f.Close()
	os.Remove(f.Name())
	for i, g := range p.all {
		if g == f {
			p.all = append(p.all[:i], p.all[i+1:]...)
			break
		}
	}
}

// Close removes every file of the pool.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range append([]*os.File(nil), p.all...) {
		p.drop(f)
	}
	p.free = nil
}
