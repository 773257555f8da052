package shm

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unsafe"

	pb "github.com/face0/face0/plugins/proto"
)

func tensor(n int, b byte) *pb.Value {
	data := make([]byte, n)
	for i := range data {
		data[i] = b + byte(i%7)
	}
	return &pb.Value{Type: "LATENT", Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_UINT8, Shape: []int64{int64(n)}, Data: data}}}
}

func data(v *pb.Value) []byte { return v.GetTensor().GetData() }

// ourFiles lists the files in Dir() this process owns, and mapped counts
// this process's mappings of face0 files.
func ourFiles(t *testing.T) (files []string, mapped int) {
	t.Helper()
	all, _ := filepath.Glob(filepath.Join(Dir(), prefix+"*"))
	handedBack := 0
	for _, f := range all {
		if k, o, ok := parseName(filepath.Base(f)); ok && o == self() {
			// This process plays the plugins too: files handed back to them
			// for reuse are theirs, up to a bound.
			if k == free && handedBack < maxFree {
				handedBack++
				continue
			}
			files = append(files, f)
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return files, strings.Count(string(maps), prefix)
}

func noLeaks(t *testing.T) {
	t.Helper()
	if files, mapped := ourFiles(t); len(files) > 0 || mapped > 0 {
		t.Fatalf("left behind: files %v, %d mappings", files, mapped)
	}
}

// plugin plays a plugin in this process: it maps a request's inputs, runs
// node on them and writes its outputs, as the SDK does.
func plugin(t *testing.T, req map[string]*pb.Value, node func(map[string]*pb.Value) map[string]*pb.Value) map[string]*pb.Value {
	t.Helper()
	in, err := MapInputs(req)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, _, err := WriteOutputs(node(req), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A chain through the host: a plugin's output is received without a copy,
// sent on by name, mapped by the next plugin and passed on unchanged by
// name again; nested values and small tensors travel too. Releasing gives
// every file and mapping back.
func TestChainThroughHost(t *testing.T) {
	h := NewHost(2)
	big, small := tensor(3*Threshold+5, 1), tensor(10, 2)
	list := &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{tensor(Threshold, 3), small}}}}
	rec := &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Fields: map[string]*pb.Value{"l": list, "s": small}}}}
	want := map[string][]byte{"big": data(big), "small": data(small), "list0": data(tensor(Threshold, 3))}

	out := plugin(t, nil, func(map[string]*pb.Value) map[string]*pb.Value {
		return map[string]*pb.Value{"big": big, "small": small, "rec": rec}
	})
	if out["big"].GetTensor().ShmFile == "" || out["small"] != small || len(data(big)) == 0 {
		t.Fatalf("outputs %v: want big in a file, small inline, inputs untouched", out)
	}
	if err := h.Receive(out); err != nil {
		t.Fatal(err)
	}
	check := func(vals map[string]*pb.Value) {
		t.Helper()
		got := vals["rec"].GetRecord().Fields["l"].GetList().Items[0]
		if !bytes.Equal(data(vals["big"]), want["big"]) || !bytes.Equal(data(vals["small"]), want["small"]) || !bytes.Equal(data(got), want["list0"]) {
			t.Fatal("data changed in transit")
		}
	}
	check(out)
	if mapped, _ := h.Stats(); mapped != 2 {
		t.Fatalf("%d files mapped, want 2", mapped)
	}

	req, lent, err := h.Send(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(lent) != 0 || req["big"].GetTensor().ShmFile == "" || len(data(req["big"])) != 0 {
		t.Fatalf("received tensors must go on by name, not be written again: lent %v", lent)
	}
	name := req["big"].GetTensor().ShmFile
	out2 := plugin(t, req, func(in map[string]*pb.Value) map[string]*pb.Value {
		check(in)
		return in // unchanged: handed on by name
	})
	if out2["big"].GetTensor().ShmFile != name {
		t.Fatalf("an unchanged input was written again: %s", out2["big"].GetTensor().ShmFile)
	}
	if err := h.Receive(out2); err != nil {
		t.Fatal(err)
	}
	check(out2)
	h.Done(lent)
	h.Release(out)
	check(out2) // still referenced by out2
	if data(out["big"]) != nil {
		t.Fatal("a released tensor keeps its Data")
	}
	h.Release(out2)
	if mapped, _ := h.Stats(); mapped != 0 {
		t.Fatalf("%d files still mapped", mapped)
	}
	h.Close() // waits for the files' removal
	noLeaks(t)
}

// A plugin that writes into its input gets its own copy: the host's file
// stays as it was, and the output is a new file with the change.
func TestWriteIntoInputIsPrivate(t *testing.T) {
	h := NewHost(2)
	defer h.Close()
	src := tensor(2*Threshold, 5)
	req, lent, err := h.Send(map[string]*pb.Value{"x": src})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Done(lent)
	if len(lent) != 1 {
		t.Fatalf("a tensor in memory is written to a pool file: lent %v", lent)
	}
	out := plugin(t, req, func(in map[string]*pb.Value) map[string]*pb.Value {
		in["x"].GetTensor().Data[Threshold+1] = 99
		return in
	})
	name := out["x"].GetTensor().ShmFile
	if name == lent[0] || name == "" {
		t.Fatalf("a changed input went out as %q", name)
	}
	file, _ := os.ReadFile(lent[0])
	if file[Threshold+1] != data(src)[Threshold+1] {
		t.Fatal("the plugin's write reached the host's file")
	}
	if err := h.Receive(out); err != nil {
		t.Fatal(err)
	}
	if d := data(out["x"]); d[Threshold+1] != 99 || !bytes.Equal(d[:Threshold], data(src)[:Threshold]) {
		t.Fatal("the changed output is wrong")
	}
	h.Release(out)
}

// The pool reuses a file only when no process maps it: a plugin that kept
// its input mapping must never see it change.
func TestPoolReusesOnlyUnusedFiles(t *testing.T) {
	h := NewHost(2)
	defer h.Close()
	send := func(b byte) (map[string]*pb.Value, string) {
		req, lent, err := h.Send(map[string]*pb.Value{"x": tensor(Threshold, b)})
		if err != nil || len(lent) != 1 {
			t.Fatal(lent, err)
		}
		h.Done(lent)
		return req, lent[0]
	}
	_, first := send(1)
	_, again := send(2)
	if again != first {
		t.Fatalf("file not reused: %s then %s", first, again)
	}
	req, _ := send(3)
	in, err := MapInputs(req) // a plugin still maps it
	if err != nil {
		t.Fatal(err)
	}
	_, other := send(4)
	if other == first {
		t.Fatal("a file still mapped by a plugin was overwritten")
	}
	if got := data(req["x"]); got[0] != 3 {
		t.Fatalf("the mapped input changed to %d", got[0])
	}
	in.Close()
	if _, pool := h.Stats(); pool != 2 {
		t.Fatalf("%d pool files, want 2", pool)
	}
}

func TestRefusesForeignAndBadFiles(t *testing.T) {
	h := NewHost(2)
	defer h.Close()
	ten := func(name string, n int64) map[string]*pb.Value {
		return map[string]*pb.Value{"x": {Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_UINT8, Shape: []int64{n}, ShmFile: name}}}}
	}
	for _, p := range []string{"/etc/passwd", Dir() + "/../etc/passwd", Dir() + "/other-file"} {
		if err := h.Receive(ten(p, 1)); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("host, %s: err = %v", p, err)
		}
		if _, err := MapInputs(ten(p, 1)); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("plugin, %s: err = %v", p, err)
		}
	}
	// A file whose size does not match its tensor is refused and removed.
	path, err := writeFile(make([]byte, 100))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Receive(ten(path, 99)); err == nil || !strings.Contains(err.Error(), "needs 99 bytes") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a refused file was left behind")
	}
	// A file its maker still holds open for writing could change later.
	path, _ = writeFile(make([]byte, 100))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = h.Receive(ten(path, 100))
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "open for writing") {
		t.Fatalf("err = %v", err)
	}
	// A link is not a tensor file.
	link := newName(oneShot)
	os.Symlink("/etc/passwd", link)
	defer os.Remove(link)
	if err := h.Receive(ten(link, 1)); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
	// A host file that was not sent cannot be named.
	if err := h.Receive(ten(newName(kept), 1)); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("err = %v", err)
	}
	noLeaks(t)
}

func TestChangedPages(t *testing.T) {
	n := 3 * os.Getpagesize()
	path := newName(kept)
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, n), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	req := map[string]*pb.Value{"x": {Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_UINT8, Shape: []int64{int64(n)}, ShmFile: path}}}}
	in, err := MapInputs(req)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	mem := data(req["x"])
	if c, ok := changed(mem); !ok {
		t.Skip("/proc/self/pagemap is not readable here")
	} else if c {
		t.Fatal("untouched mapping reported changed")
	}
	_ = mem[os.Getpagesize()+3] // a read keeps the page the file's
	if c, _ := changed(mem); c {
		t.Fatal("read page reported changed")
	}
	mem[2*os.Getpagesize()] = 8
	if c, _ := changed(mem); !c {
		t.Fatal("written page not seen")
	}
}

// A node that keeps an input past its call faults on it (an error with
// SetPanicOnFault) instead of reading whatever is mapped there next.
func TestRetiredInputFaults(t *testing.T) {
	h := NewHost(1)
	defer h.Close()
	req, lent, _ := h.Send(map[string]*pb.Value{"x": tensor(Threshold, 1)})
	defer h.Done(lent)
	in, err := MapInputs(req)
	if err != nil {
		t.Fatal(err)
	}
	kept := data(req["x"])
	in.Close()
	var addr uintptr
	func() {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			r := recover()
			f, ok := r.(interface{ Addr() uintptr })
			if !ok {
				t.Fatalf("recovered %v, want a fault", r)
			}
			addr = f.Addr()
		}()
		sink = kept[10]
	}()
	if !Retired(addr) || addr != uintptr(unsafe.Pointer(&kept[10])) {
		t.Fatalf("fault at %x not recognised as a retired input", addr)
	}
}

var sink byte

// Another process cutting a received file short makes reads fail with an
// error, not bring the host down.
func TestTruncatedFileIsAnError(t *testing.T) {
	h := NewHost(1)
	defer h.Close()
	out := plugin(t, nil, func(map[string]*pb.Value) map[string]*pb.Value {
		return map[string]*pb.Value{"x": tensor(Threshold, 1)}
	})
	if err := h.Receive(out); err != nil {
		t.Fatal(err)
	}
	req, _, _ := h.Send(out)
	if err := os.Truncate(req["x"].GetTensor().ShmFile, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Detach(out); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("err = %v", err)
	}
	h.Release(out)
}

func TestDetachOwnsItsBytes(t *testing.T) {
	h := NewHost(1)
	out := plugin(t, nil, func(map[string]*pb.Value) map[string]*pb.Value {
		return map[string]*pb.Value{"x": tensor(Threshold, 4)}
	})
	if err := h.Receive(out); err != nil {
		t.Fatal(err)
	}
	kept, err := h.Detach(out)
	if err != nil {
		t.Fatal(err)
	}
	h.Release(out)
	h.Close()
	if !bytes.Equal(data(kept["x"]), data(tensor(Threshold, 4))) {
		t.Fatal("detached copy changed")
	}
	noLeaks(t)
}

// Issue 12: a sweep removes only what no live process owns or uses.
func TestSweepSparesLiveOwnersAndOpenFiles(t *testing.T) {
	old := time.Now().Add(-2 * time.Hour)
	mk := func(base string) string {
		p := filepath.Join(Dir(), base)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
		t.Cleanup(func() { os.Remove(p) })
		return p
	}
	mine := mk(filepath.Base(newName(kept)))                          // a live owner: this test
	dead := mk(poolPrefix + owner{PID: 1, Start: 1}.String() + "-aa") // pid 1 did not start at tick 1
	legacy := mk(prefix + "0123456789abcdef01234567")
	legacyOpen := mk(poolPrefix + "0123456789abcdef0123456a")
	f, err := os.Open(legacyOpen)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	Sweep(time.Hour)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if !exists(mine) {
		t.Error("a live process's file was swept")
	}
	if exists(dead) || exists(legacy) {
		t.Error("files nobody owns or uses survived")
	}
	if _, supported := noWriters(int(f.Fd())); supported && !exists(legacyOpen) {
		t.Error("a file some process has open was swept")
	}
}

func BenchmarkHop16MB(b *testing.B) {
	h := NewHost(2)
	defer h.Close()
	src := map[string]*pb.Value{"x": tensor(16<<20, 1)}
	b.SetBytes(16 << 20)
	for b.Loop() {
		in, err := MapInputs(nil)
		if err != nil {
			b.Fatal(err)
		}
		out, _, err := WriteOutputs(src, in)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Receive(out); err != nil {
			b.Fatal(err)
		}
		h.Release(out)
	}
}

// The kernel lease tells a file nobody else has open (or mapped) from one in
// use, which is what removal and reuse rest on.
func TestUnusedSeesOtherOpenersAndMappings(t *testing.T) {
	path := newName(kept)
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if free, supported := unused(fd); !supported {
		t.Skip("leases are not available here")
	} else if !free {
		t.Fatal("a file open only here is reported in use")
	}
	g, _ := os.Open(path)
	if free, _ := unused(fd); free {
		t.Fatal("a second opener is not seen")
	}
	mem, err := mapFile(int(g.Fd()), 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if free, _ := unused(fd); free {
		t.Fatal("a mapping whose descriptor is closed is not seen")
	}
	retire(mem)
	if free, _ := unused(fd); !free {
		t.Fatal("a retired mapping still counts")
	}
	w, _ := os.OpenFile(path, os.O_RDWR, 0)
	if ok, _ := noWriters(fd); ok {
		t.Fatal("a writer is not seen")
	}
	w.Close()
	if ok, _ := noWriters(fd); !ok {
		t.Fatal("no writer, yet one is reported")
	}
}

// A released file goes back to the plugin that wrote it, whose next output
// reuses its pages; never while another process still maps it.
func TestReleasedFilesAreReused(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "face0-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	t.Setenv(DirEnv, dir)
	h := NewHost(1)
	defer h.Close()
	cycle := func(b byte) (map[string]*pb.Value, os.FileInfo) {
		out, _, err := WriteOutputs(map[string]*pb.Value{"x": tensor(Threshold, b)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(out["x"].GetTensor().ShmFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Receive(out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data(out["x"]), data(tensor(Threshold, b))) {
			t.Fatal("data changed in transit")
		}
		return out, st
	}
	handedBack := func() string {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if m, _ := filepath.Glob(filepath.Join(dir, "face0-shm-free-*")); len(m) == 1 {
				return m[0]
			}
		}
		t.Fatal("the released file was not handed back")
		return ""
	}
	out, first := cycle(1)
	h.Release(out)
	handedBack()
	out, second := cycle(2)
	if !os.SameFile(first, second) {
		t.Fatal("the handed-back file was not reused")
	}
	// A plugin still maps it: it must not change, so a new file is made.
	req, _, _ := h.Send(out)
	in, err := MapInputs(req)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h.Release(out)
	handedBack()
	out, third := cycle(3)
	if os.SameFile(second, third) {
		t.Fatal("a file a plugin still maps was overwritten")
	}
	if data(req["x"])[0] != 2 {
		t.Fatal("the mapped input changed")
	}
	h.Release(out)
}
