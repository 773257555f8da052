package textenc

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers/layerstest"
)

// TestReadONNX: the weights WriteONNX exported read back exactly, the
// embedding tables untransposed and the linears transposed back.
func TestReadONNX(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	got, err := ReadONNX(filepath.Join(dir, sdmodel.TextEncoderFile), c)
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range w {
		if g := got[name]; g == nil || !slices.Equal(g.Shape, x.Shape) || !slices.Equal(g.Data, x.Data) {
			t.Fatalf("%s does not read back as written", name)
		}
	}
}
