package ort_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
)

// weightModel writes a model holding a 64 KiB weight, so each costs about
// the same in the cache's estimate.
func weightModel(t *testing.T, dir, name string) (string, int64) {
	t.Helper()
	g := onnx.NewGraph(name)
	x := g.Input("x", onnx.Float, 16384)
	g.Output("y", g.Add(x, g.Initializer("w", make([]float32, 16384), 16384)))
	p := filepath.Join(dir, name+".onnx")
	if err := g.Save(p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	return p, st.Size()
}

func TestCacheEviction(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	a, size := weightModel(t, dir, "a")
	b, _ := weightModel(t, dir, "b")
	c, _ := weightModel(t, dir, "c")
	// Room for two models at factor 1.
	cache := ort.NewCache(2*size+size/2, 1)
	defer cache.Close()

	get := func(p string) *ort.Session {
		s, release, err := cache.Acquire(p, ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		release()
		return s
	}
	sa := get(a)
	if again := get(a); again != sa {
		t.Fatal("second Acquire loaded the model again")
	}
	get(b)
	get(a) // a is now the most recently used
	get(c) // evicts b, the least recently used
	if got := fmt.Sprint(names(cache.Loaded())); got != "[c a]" {
		t.Fatalf("loaded %s, want [c a]", got)
	}
	if n, bytes := cache.Stats(); n != 2 || bytes != 2*size {
		t.Errorf("stats %d sessions %d bytes, want 2, %d", n, bytes, 2*size)
	}

	// A session in use is never evicted, even when it is the least recently
	// used or alone over budget; it goes when released.
	_, releaseB, err := cache.Acquire(b, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	get(a)
	get(c) // b is now the least recently used, but busy: a goes instead
	if got := fmt.Sprint(names(cache.Loaded())); got != "[c b]" {
		t.Fatalf("loaded %s, want [c b]", got)
	}
	releaseB()
	releaseB() // a second release is harmless

	small := ort.NewCache(size/2, 1)
	defer small.Close()
	sa, releaseA, err := small.Acquire(a, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]ort.Tensor{"x": ort.F32(make([]float32, 16384), 16384)}
	if _, err := sa.Run(in); err != nil {
		t.Fatalf("a model over budget but in use was closed: %v", err)
	}
	releaseA()
	if n, _ := small.Stats(); n != 0 {
		t.Errorf("%d sessions after release, want 0", n)
	}
	if _, err := sa.Run(in); !errors.Is(err, ort.ErrClosed) {
		t.Errorf("evicted session still runs: %v", err)
	}
}

func TestCacheConcurrentLoadOnce(t *testing.T) {
	orttest.Require(t)
	p, _ := weightModel(t, t.TempDir(), "m")
	cache := ort.NewCache(1<<30, 0)
	defer cache.Close()
	var wg sync.WaitGroup
	got := make([]*ort.Session, 8)
	for i := range got {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, release, err := cache.Acquire(p, ort.Options{})
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			got[i] = s
		}(i)
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] {
			t.Fatal("the model was loaded more than once")
		}
	}
	// A failed load is reported to every caller and not cached.
	if _, _, err := cache.Acquire(filepath.Join(t.TempDir(), "gone.onnx"), ort.Options{}); err == nil {
		t.Error("no error for a missing model")
	}
	if n, _ := cache.Stats(); n != 1 {
		t.Errorf("%d sessions cached, want 1", n)
	}
}

func names(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p[:len(p)-len(".onnx")])
	}
	return out
}
