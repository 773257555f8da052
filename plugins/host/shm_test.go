package host_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/shm"
	"github.com/face0/face0/plugins/value"
)

// privateShm gives the test a shared-memory folder of its own, so that what
// it ages or counts is only its own (other test runs use /dev/shm too).
func privateShm(t *testing.T) string {
	t.Helper()
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = ""
	}
	dir, err := os.MkdirTemp(base, "face0-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv(shm.DirEnv, dir)
	return dir
}

func startTestpack(t *testing.T) *host.Manager {
	t.Helper()
	m, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	return m
}

func execute(t *testing.T, m *host.Manager, node string, inputs map[string]*pb.Value) *pb.Outputs {
	t.Helper()
	out, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: node, Inputs: inputs}, func(*pb.ExecuteEvent) {})
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	return out
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// mappings counts the shared-memory files process pid has mapped.
func mappings(t *testing.T, pid int, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), dir+"/")
}

// Issue 12: another host starting (face0 run, face0 nodes, a second serve)
// must not sweep the files of a host that still runs, however old they are;
// the running host's next large transfers must still work.
func TestSweepSparesALiveHostsFiles(t *testing.T) {
	dir := privateShm(t)
	a := startTestpack(t)
	defer a.Close()
	big := value.Float32Tensor("LATENT", make([]float32, 4<<20), 1, 4<<20)
	execute(t, a, "TensorLen", map[string]*pb.Value{"latent": big}) // a pool file
	made := execute(t, a, "MakeTensor", map[string]*pb.Value{"mb": value.Int(16), "fill": value.Float(0.5)})
	held := files(t, dir)
	if len(held) == 0 {
		t.Fatal("no shared-memory files while transfers are held")
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, f := range held {
		os.Chtimes(filepath.Join(dir, f), old, old)
	}

	b := startTestpack(t) // sweeps at start
	b.Close()

	for _, f := range held {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("a live host's file was swept: %v", err)
		}
	}
	out := execute(t, a, "TensorLen", map[string]*pb.Value{"latent": big})
	if got := out.Values["INT"].GetInt(); got != 16<<20 {
		t.Fatalf("TensorLen = %d after the sweep", got)
	}
	out = execute(t, a, "TensorSum", map[string]*pb.Value{"latent": made.Values["LATENT"]})
	if got := out.Values["FLOAT"].GetFloat(); got != float64(4<<20)*0.5 {
		t.Fatalf("TensorSum = %v after the sweep", got)
	}
}

// A plugin that dies mid-write leaves a file no response names: the host
// never maps it, removes it, and the restarted plugin works.
func TestPluginDyingMidWriteLeavesNothingValid(t *testing.T) {
	dir := privateShm(t)
	m := startTestpack(t)
	defer m.Close()
	_, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "DieMidWrite", Inputs: map[string]*pb.Value{"mb": value.Int(8)}}, func(*pb.ExecuteEvent) {})
	if err == nil || !strings.Contains(err.Error(), "crashed") {
		t.Fatalf("err = %v, want a crash", err)
	}
	if n := mappings(t, os.Getpid(), dir); n != 0 {
		t.Fatalf("the host mapped %d files of a plugin that died", n)
	}
	// The host sweeps a dead plugin's files in the background; the next
	// host start would too.
	deadline := time.Now().Add(10 * time.Second)
	for len(files(t, dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the half-written file is still there: %v", files(t, dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := execute(t, m, "MakeTensor", map[string]*pb.Value{"mb": value.Int(2), "fill": value.Float(1)})
	if got := len(out.Values["LATENT"].GetTensor().GetData()); got != 2<<20 {
		t.Fatalf("after the restart: %d bytes", got)
	}
}

// Received tensors are mapped until released; releasing gives back every
// mapping and file, in the host and in the plugin.
func TestReleaseGivesBackEverything(t *testing.T) {
	dir := privateShm(t)
	m := startTestpack(t)
	pid := execute(t, m, "Pid", nil).Values["INT"].GetInt()
	var made, held []*pb.Outputs
	for i := range 3 {
		out := execute(t, m, "MakeTensor", map[string]*pb.Value{"mb": value.Int(4), "fill": value.Float(float64(i))})
		made = append(made, out)
		// Handed on unchanged: the same file, not a copy.
		held = append(held, execute(t, m, "PassTensor", map[string]*pb.Value{"latent": out.Values["LATENT"]}))
	}
	for _, out := range made {
		m.Release(out.Values)
	}
	if n := mappings(t, os.Getpid(), dir); n != 3 {
		t.Fatalf("%d mappings while 3 tensors are held", n)
	}
	for i, out := range held {
		data, _, err := value.AsFloat32(out.Values["LATENT"])
		if err != nil || data[len(data)-1] != float32(i) {
			t.Fatalf("tensor %d: %v", i, err)
		}
		m.Release(out.Values)
		if out.Values["LATENT"].GetTensor().GetData() != nil {
			t.Fatal("a released tensor keeps its data")
		}
	}
	if n := mappings(t, os.Getpid(), dir); n != 0 {
		t.Fatalf("%d mappings left in the host", n)
	}
	if n := mappings(t, int(pid), dir); n != 0 {
		t.Fatalf("%d mappings left in the plugin", n)
	}
	// Released files are removed, or handed back to the plugin that wrote
	// them (a few) for its next outputs, beside the caller.
	handedBack := fmt.Sprintf("face0-shm-free-%d.", pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := files(t, dir)
		others := 0
		for _, f := range left {
			if !strings.HasPrefix(f, handedBack) {
				others++
			}
		}
		if others == 0 && len(left) <= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("files left: %v", left)
		}
	}
	// Close ends what was never released, and the input pool.
	execute(t, m, "TensorLen", map[string]*pb.Value{"latent": value.Float32Tensor("LATENT", make([]float32, 1<<20), 1<<20)})
	execute(t, m, "MakeTensor", map[string]*pb.Value{"mb": value.Int(4)})
	m.Close()
	if left := files(t, dir); len(left) != 0 {
		t.Fatalf("files left after Close: %v", left)
	}
}

// A node that keeps an input past its call gets an error naming the mistake
// when it reads it later, not another tensor's bytes.
func TestKeptInputIsAnError(t *testing.T) {
	privateShm(t)
	m := startTestpack(t)
	defer m.Close()
	big := value.Float32Tensor("LATENT", make([]float32, 1<<20), 1<<20)
	execute(t, m, "KeepInput", map[string]*pb.Value{"latent": big})
	execute(t, m, "MakeTensor", map[string]*pb.Value{"mb": value.Int(4)}) // another mapping may come and go
	_, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "KeepInput"}, func(*pb.ExecuteEvent) {})
	if err == nil || !strings.Contains(err.Error(), "copy what you keep") {
		t.Fatalf("err = %v", err)
	}
}
