// Package ckpttest gives tests a checkpoint's key list without its weights:
// a ckpt.Source made of names and shapes alone, and the complete key list of
// a real SD 1.5 checkpoint (ml/ckpt/testdata/sd15-keys.tsv), so that the key
// mapping and the networks it feeds are checked against the same fixture.
package ckpttest

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/face0/face0/ml/safetensors"
)

// KeyList is a ckpt.Source of names and shapes; every tensor reads as F32.
// The zero value is an empty list.
type KeyList struct {
	names  []string
	shapes map[string][]int
}

// Names lists the keys in the order they were added.
func (k *KeyList) Names() []string { return slices.Clone(k.names) }

// Info gives a key's dtype (always F32) and shape.
func (k *KeyList) Info(n string) (safetensors.Info, bool) {
	s, ok := k.shapes[n]
	return safetensors.Info{DType: safetensors.F32, Shape: s}, ok
}

// Shape is a key's shape (nil when absent).
func (k *KeyList) Shape(n string) []int { return k.shapes[n] }

// With adds a key and returns k, so lists can be written in one expression.
func (k *KeyList) With(name string, shape ...int) *KeyList {
	if k.shapes == nil {
		k.shapes = map[string][]int{}
	}
	if _, dup := k.shapes[name]; !dup {
		k.names = append(k.names, name)
	}
	k.shapes[name] = shape
	return k
}

// Filter is a new list of the keys keep accepts; Filter(nil) copies all.
func (k *KeyList) Filter(keep func(string) bool) *KeyList {
	out := &KeyList{}
	for _, n := range k.names {
		if keep == nil || keep(n) {
			out.With(n, k.shapes[n]...)
		}
	}
	return out
}

// SD15 reads the complete key list of an SD 1.5 checkpoint with EMA
// (v1-5-pruned.safetensors), written from the public reference named in the
// fixture's header.
func SD15(t testing.TB) *KeyList {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "testdata", "sd15-keys.tsv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k := &KeyList{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 3 {
			t.Fatalf("%s: bad fixture line %q", path, line)
		}
		var shape []int
		if dims := strings.Trim(cols[2], "[]"); dims != "" {
			for _, d := range strings.Split(dims, ",") {
				n, err := strconv.Atoi(d)
				if err != nil {
					t.Fatalf("%s: bad shape in %q", path, line)
				}
				shape = append(shape, n)
			}
		}
		k.With(cols[0], shape...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return k
}
