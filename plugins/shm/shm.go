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
	"time"

	pb "github.com/face0/face0/plugins/proto"
)

// Threshold is the tensor size from which data goes through shared memory.
// Below it the stream is cheaper than a file.
const Threshold = 1 << 20

const prefix = "face0-shm-"

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
	var files []string
	out := make(map[string]*pb.Value, len(values))
	for k, v := range values {
		nv, err := externalize(v, &files)
		if err != nil {
			Remove(files)
			return nil, nil, err
		}
		out[k] = nv
	}
	return out, files, nil
}

// externalize copies only the path down to each large tensor.
func externalize(v *pb.Value, files *[]string) (*pb.Value, error) {
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
			ne, err := externalize(e, files)
			if err != nil {
				return nil, err
			}
			items[i] = ne
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_List{List: &pb.List{Items: items}}}, nil
	case *pb.Value_Record:
		fields := make(map[string]*pb.Value, len(k.Record.Fields))
		for n, e := range k.Record.Fields {
			ne, err := externalize(e, files)
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
			data, err = read(t.ShmFile)
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

func read(name string) ([]byte, error) {
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
	data, err := os.ReadFile(clean)
	os.Remove(clean)
	return data, err
}
