package ort_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
)

// testModel has a float input with a dynamic batch, an int32 and an int64
// input, and outputs of all three types plus a scalar:
//
//	y = x * 2            float32 [n, 3]
//	ids = ids32 + 1      int32   [n]
//	sum = sum(i64)       int64   scalar
func testModel(t *testing.T, dir string) string {
	t.Helper()
	g := onnx.NewGraph("io")
	x := g.Input("x", onnx.Float, "n", 3)
	ids := g.Input("ids", onnx.Int32, "n")
	i64 := g.Input("i64", onnx.Int64, 4)
	g.Output("y", g.Mul(x, g.Scalar(2)), "n", 3)
	one := g.Cast(g.Ints(1), onnx.Int32)
	g.Output("ids_out", g.Add(ids, one), "n")
	g.OutputScalar("sum", g.ReduceSum(i64, false, 0))
	p := filepath.Join(dir, "io.onnx")
	if err := g.Save(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	orttest.Require(t)
	s, err := ort.Load(testModel(t, t.TempDir()), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fmt.Sprint(s.Inputs()); got != "[x float32[n,3] ids int32[n] i64 int64[4]]" {
		t.Errorf("inputs %s", got)
	}
	for _, n := range []int64{1, 3} { // dynamic batch
		x := make([]float32, n*3)
		ids := make([]int32, n)
		for i := range x {
			x[i] = float32(i)
		}
		for i := range ids {
			ids[i] = int32(10 * i)
		}
		out, err := s.Run(map[string]ort.Tensor{
			"x":   ort.F32(x, n, 3),
			"ids": ort.I32(ids, n),
			"i64": ort.I64([]int64{1, 2, 3, 1 << 40}, 4),
		})
		if err != nil {
			t.Fatal(err)
		}
		y := out["y"]
		if fmt.Sprint(y.Shape) != fmt.Sprint([]int64{n, 3}) || y.Float32()[len(x)-1] != 2*x[len(x)-1] {
			t.Errorf("n=%d: y %v %v", n, y.Shape, y.Float32())
		}
		if got := out["ids_out"].Int32(); len(got) != int(n) || got[n-1] != ids[n-1]+1 {
			t.Errorf("n=%d: ids_out %v", n, got)
		}
		if got := out["sum"]; len(got.Shape) != 0 || got.Int64()[0] != 6+1<<40 {
			t.Errorf("sum %v %v", got.Shape, got.Int64())
		}
	}
}

func TestRunErrors(t *testing.T) {
	orttest.Require(t)
	path := testModel(t, t.TempDir())
	s, err := ort.Load(path, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := func() map[string]ort.Tensor {
		return map[string]ort.Tensor{
			"x":   ort.F32(make([]float32, 6), 2, 3),
			"ids": ort.I32(make([]int32, 2), 2),
			"i64": ort.I64(make([]int64, 4), 4),
		}
	}
	cases := []struct {
		name   string
		change func(m map[string]ort.Tensor)
		want   []string
	}{
		{"unknown input", func(m map[string]ort.Tensor) { m["sample"] = m["x"] }, []string{`unknown input "sample"`, "x float32[n,3]"}},
		{"missing input", func(m map[string]ort.Tensor) { delete(m, "ids") }, []string{`missing input "ids"`}},
		{"wrong dtype", func(m map[string]ort.Tensor) { m["ids"] = ort.I64([]int64{1, 2}, 2) }, []string{`input "ids" is int64`, "ids int32[n]"}},
		{"wrong rank", func(m map[string]ort.Tensor) { m["x"] = ort.F32(make([]float32, 6), 6) }, []string{`input "x" has shape [6] (rank 1)`}},
		{"wrong fixed dim", func(m map[string]ort.Tensor) { m["x"] = ort.F32(make([]float32, 8), 2, 4) }, []string{"dim 1 must be 3"}},
		{"short data", func(m map[string]ort.Tensor) { m["x"] = ort.F32(make([]float32, 5), 2, 3) }, []string{"needs 6 values, data has 5"}},
		{"unsupported data", func(m map[string]ort.Tensor) { m["x"] = ort.Tensor{Shape: []int64{2, 3}, Data: make([]float64, 6)} }, []string{"[]float64"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := good()
			c.change(in)
			_, err := s.Run(in)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(c.want, "io.onnx") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := s.Run(good()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RunContext(ctx, good()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
	s.Close()
	if _, err := s.Run(good()); !errors.Is(err, ort.ErrClosed) {
		t.Errorf("run after close: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.onnx")
	good := testModel(t, dir)
	raw, _ := os.ReadFile(good)
	os.WriteFile(corrupt, raw[:len(raw)-7], 0o644)
	// An op onnxruntime does not know: the file is valid ONNX, so the error
	// comes from onnxruntime and must still name the file.
	g := onnx.NewGraph("bad")
	x := g.Input("x", onnx.Float, 1)
	g.Output("y", g.Node("NoSuchOp", []onnx.Value{x}))
	unknownOp := filepath.Join(dir, "unknown_op.onnx")
	if err := g.Save(unknownOp); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		opts ort.Options
		want []string
	}{
		{"missing file", filepath.Join(dir, "nope.onnx"), ort.Options{}, []string{"nope.onnx", "no such file"}},
		{"corrupt file", corrupt, ort.Options{}, []string{"corrupt.onnx", "truncated or corrupt"}},
		{"unknown op", unknownOp, ort.Options{}, []string{"unknown_op.onnx", "onnxruntime rejected", "NoSuchOp"}},
		{"unknown provider", good, ort.Options{Provider: "metal"}, []string{`unknown execution provider "metal"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ort.Load(c.path, c.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestGPUProviderUnavailable checks that asking the CPU-only library for a
// GPU provider fails clearly instead of silently running on the CPU. With a
// GPU build (FACE0_ORT_LIB) the load may succeed, which is fine.
func TestGPUProviderUnavailable(t *testing.T) {
	orttest.Require(t)
	path := testModel(t, t.TempDir())
	for _, p := range []string{"cuda", "tensorrt"} {
		s, err := ort.Load(path, ort.Options{Provider: p})
		if err == nil {
			t.Logf("%s provider available", p)
			s.Close()
			continue
		}
		for _, w := range []string{"the " + p + " execution provider is not available", ort.LibEnv} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", p, err, w)
			}
		}
	}
}

// TestMissingLibrary runs the test binary again with FACE0_ORT_LIB pointing
// nowhere: the environment is set up once per process, so this needs a fresh
// one.
func TestMissingLibrary(t *testing.T) {
	if os.Getenv("ORT_TEST_CHILD") == "1" {
		err := ort.Init()
		if err == nil || !errors.Is(err, ort.ErrNoLibrary) {
			fmt.Println("unexpected:", err)
			os.Exit(2)
		}
		fmt.Println(err)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingLibrary$")
	cmd.Env = append(os.Environ(), "ORT_TEST_CHILD=1", ort.LibEnv+"=/nonexistent/libonnxruntime.so")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, w := range []string{"/nonexistent/libonnxruntime.so", "run scripts/setup.sh"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("message %q does not mention %q", out, w)
		}
	}
}

func TestConcurrentRun(t *testing.T) {
	orttest.Require(t)
	s, err := ort.Load(testModel(t, t.TempDir()), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				n := int64(1 + (w+i)%4)
				x := make([]float32, n*3)
				for j := range x {
					x[j] = float32(w*1000 + j)
				}
				out, err := s.Run(map[string]ort.Tensor{
					"x": ort.F32(x, n, 3), "ids": ort.I32(make([]int32, n), n), "i64": ort.I64(make([]int64, 4), 4),
				})
				if err != nil {
					errs <- err
					return
				}
				y := out["y"].Float32()
				for j := range x {
					if y[j] != 2*x[j] {
						errs <- fmt.Errorf("worker %d: y[%d] = %g, want %g", w, j, y[j], 2*x[j])
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCUDAMissingLibraries: asking for the cuda device on a machine
// without CUDA names each missing library and what it belongs to, before
// onnxruntime is asked (it would name only the first). It needs the GPU
// build (make setup-gpu, or FACE0_ORT_LIB pointing at its libonnxruntime.so)
// and skips without it, and on a machine where every library is there.
func TestCUDAMissingLibraries(t *testing.T) {
	orttest.Require(t)
	missing, err := ort.MissingCUDALibraries(ort.LibraryPath())
	if err != nil {
		// A CPU build: the error says how to get the GPU build.
		if !strings.Contains(err.Error(), "make setup-gpu") {
			t.Fatalf("CPU build: %v", err)
		}
		_, lerr := ort.Load(testModel(t, t.TempDir()), ort.Options{Provider: "cuda"})
		if lerr == nil || !strings.Contains(lerr.Error(), "make setup-gpu") {
			t.Fatalf("cuda on the CPU build: %v", lerr)
		}
		t.Skipf("the CPU build is installed (%s); the rest needs the GPU build", ort.LibraryPath())
	}
	if len(missing) == 0 {
		t.Skip("every CUDA library is present: this machine can run the cuda device")
	}
	_, err = ort.Load(testModel(t, t.TempDir()), ort.Options{Provider: "cuda"})
	if err == nil {
		t.Fatal("a cuda session loaded although libraries are missing")
	}
	for _, m := range missing {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("the error does not name %s: %v", m, err)
		}
	}
	t.Logf("%v", err)
}

// TestFindLibrary: the loader search honours LD_LIBRARY_PATH.
func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libfake_face0.so.7"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ort.FindLibrary("libfake_face0.so.7") {
		t.Fatal("found a library that is nowhere")
	}
	t.Setenv("LD_LIBRARY_PATH", "/nonexistent:"+dir)
	if !ort.FindLibrary("libfake_face0.so.7") {
		t.Fatal("LD_LIBRARY_PATH not searched")
	}
	if !ort.FindLibrary("libc.so.6") {
		t.Error("libc.so.6 not found in the system folders")
	}
}
