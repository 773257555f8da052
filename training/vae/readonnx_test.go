package vae

import (
	"slices"
	"testing"

	"github.com/face0/face0/training/layers/layerstest"
)

// TestReadONNX: the weights WriteONNX put into the decoder and encoder read
// back exactly.
func TestReadONNX(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	got, err := ReadONNX(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(w) {
		t.Fatalf("read %d tensors, wrote %d", len(got), len(w))
	}
	for name, x := range w {
		if g := got[name]; g == nil || !slices.Equal(g.Shape, x.Shape) || !slices.Equal(g.Data, x.Data) {
			t.Fatalf("%s does not read back as written", name)
		}
	}
}
