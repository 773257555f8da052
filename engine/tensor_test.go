package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/plugins/shm"
	"github.com/face0/face0/plugins/value"
)

// ownShm gives the test a shared-memory folder of its own (the plugins it
// starts inherit it), to count what is left in it.
func ownShm(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "face0-test-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	t.Setenv(shm.DirEnv, dir)
	return dir
}

// leftovers lists the files in dir and counts the mappings of them in this
// process and in the plugin process pid.
func leftovers(t *testing.T, dir string, pid int64) (files []string, mapped int) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		files = append(files, e.Name())
	}
	procs := []string{"self"}
	if pid > 0 {
		procs = append(procs, strconv.FormatInt(pid, 10))
	}
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p, "maps"))
		if err != nil {
			t.Fatal(err)
		}
		mapped += strings.Count(string(b), dir+"/")
	}
	return files, mapped
}

// expected is the digest TensorDigest gives for MakeTensor's ramp.
func expected(bytes int, fill float64) string {
	n := bytes / 4
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(fill) + float32(i%251)
	}
	t := value.Float32Tensor("LATENT", data, 1, int64(n)).GetTensor()
	h := sha256.Sum256(t.Data)
	return fmt.Sprintf("%s%v:%s", t.Dtype, t.Shape, hex.EncodeToString(h[:8]))
}

// Tensors of every size cross a chain of real plugin processes intact: made
// in one, handed on unchanged (by name), copied, handed on again, checked in
// the last. Run twice with the cache, the second time from it. Nothing is
// left mapped or in the shared-memory folder afterwards but the host's
// input pool, and nothing at all once the host closes.
func TestTensorChainDataIntact(t *testing.T) {
	dir := ownShm(t)
	r := newRig(t, t.TempDir())
	pid := intOut(t, mustRun(t, r, `{"version":1,"nodes":[{"id":"p","type":"Pid"}]}`), "p", "INT")
	sizes := []struct {
		name   string
		mb, kb int
	}{
		{"16 MiB", 16, 0},
		{"exactly the threshold", 0, shm.Threshold >> 10},
		{"just under the threshold", 0, shm.Threshold>>10 - 1},
		{"1 KiB", 0, 1},
	}
	for _, s := range sizes {
		t.Run(s.name, func(t *testing.T) {
			wf := fmt.Sprintf(`{"version":1,"nodes":[
				{"id":"m","type":"MakeTensor","inputs":{"mb":%d,"kb":%d,"fill":0.5,"ramp":true}},
				{"id":"p1","type":"PassTensor","inputs":{"latent":{"node":"m","output":"LATENT"}}},
				{"id":"p2","type":"PassTensor","inputs":{"latent":{"node":"p1","output":"LATENT"}}},
				{"id":"c","type":"CopyTensor","inputs":{"latent":{"node":"p2","output":"LATENT"}}},
				{"id":"p3","type":"PassTensor","inputs":{"latent":{"node":"c","output":"LATENT"}}},
				{"id":"d","type":"TensorDigest","inputs":{"latent":{"node":"p3","output":"LATENT"}}},
				{"id":"d0","type":"TensorDigest","inputs":{"latent":{"node":"m","output":"LATENT"}}}]}`, s.mb, s.kb)
			want := expected(s.mb<<20+s.kb<<10, 0.5)
			for _, run := range []string{"first", "cached"} {
				res := mustRun(t, r, wf)
				if run == "cached" && len(res.Executed) != 0 {
					t.Fatalf("second run executed %v", res.Executed)
				}
				for _, id := range []string{"d", "d0"} {
					if got := res.Outputs[id].Values["STRING"].GetString_(); got != want {
						t.Fatalf("%s run, %s: digest %s, want %s", run, id, got, want)
					}
				}
				r.engine.Wait()
				if _, mapped := leftovers(t, dir, pid); mapped != 0 {
					t.Fatalf("%s run left %d mappings", run, mapped)
				}
				// Released files are removed, or handed back to the plugin
				// for reuse (at most 4), beside the scheduler; the host's
				// input pool keeps at most 4.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					files, _ := leftovers(t, dir, pid)
					kinds := map[string]int{}
					for _, f := range files {
						k, _, _ := strings.Cut(strings.TrimPrefix(f, "face0-shm-"), "-")
						if k != "pool" && k != "free" {
							k = "other"
						}
						kinds[k]++
					}
					if kinds["other"] == 0 && kinds["pool"] <= 4 && kinds["free"] <= 4 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s run left files %v", run, files)
					}
				}
			}
		})
	}
	// A chain that ends in the tensor returns it as plain memory.
	res := mustRun(t, r, `{"version":1,"nodes":[
		{"id":"m","type":"MakeTensor","inputs":{"mb":2,"fill":3}},
		{"id":"p","type":"PassTensor","inputs":{"latent":{"node":"m","output":"LATENT"}}}]}`)
	r.engine.Wait()
	data, _, err := value.AsFloat32(res.Outputs["p"].Values["LATENT"])
	if err != nil || len(data) != 2<<18 || data[12345] != 3 {
		t.Fatalf("returned tensor: %d elements, %v", len(data), err)
	}
	r.close()
	if files, mapped := leftovers(t, dir, 0); mapped != 0 || len(files) != 0 {
		t.Fatalf("after Close: %d mappings, files %v", mapped, files)
	}
}

// Lists and records of tensors, large and small, cross intact and are handed
// on by name.
func TestNestedTensorsIntact(t *testing.T) {
	ownShm(t)
	r := newRig(t, "")
	res := mustRun(t, r, `{"version":1,"nodes":[
		{"id":"m","type":"MakeTensors","inputs":{"mb":2,"count":3}},
		{"id":"p1","type":"PassTensors","inputs":{"tensors":{"node":"m","output":"TENSORS"}}},
		{"id":"p2","type":"PassTensors","inputs":{"tensors":{"node":"p1","output":"TENSORS"}}},
		{"id":"d","type":"TensorsDigest","inputs":{"tensors":{"node":"p2","output":"TENSORS"}}}]}`)
	got := res.Outputs["d"].Values["STRING"].GetString_()
	for i := 0; i < 3; i++ {
		if want := fmt.Sprintf(".big[%d]=%s", i, expected(2<<20, float64(i+1))); !strings.Contains(got, want) {
			t.Fatalf("digests %s lack %s", got, want)
		}
	}
	if !strings.Contains(got, ".small=FLOAT32[3]:") {
		t.Fatalf("digests %s lack the small tensor", got)
	}
}

func mustRun(t *testing.T, r *rig, wf string) *engine.Result {
	t.Helper()
	res, _, err := r.run(t, parse(t, wf))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A caller that reads only the Ui (the server) gets no values, and nothing
// is copied out or left mapped.
func TestUIOnlyKeepsNoValues(t *testing.T) {
	dir := ownShm(t)
	r := newRig(t, "")
	plan, err := r.catalog.Compile(parse(t, `{"version":1,"nodes":[{"id":"m","type":"MakeTensor","inputs":{"mb":2}}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.engine.Run(context.Background(), plan, engine.RunOptions{UIOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := res.Outputs["m"]; !ok || out.Values != nil {
		t.Fatalf("outputs %v, want the node with no values", res.Outputs)
	}
	if _, mapped := leftovers(t, dir, 0); mapped != 0 {
		t.Fatalf("%d mappings left", mapped)
	}
}
