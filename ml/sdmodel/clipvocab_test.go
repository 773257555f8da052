package sdmodel_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/face0/face0/ml/sdmodel"
)

// TestWriteCLIPTokenizer: the embedded vocabulary gives the tokenizer the
// shipped model carries (the reference CLIP ids), byte for byte.
func TestWriteCLIPTokenizer(t *testing.T) {
	dir := t.TempDir()
	end, err := sdmodel.WriteCLIPTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if end != 49407 {
		t.Errorf("end token %d, want 49407", end)
	}
	for _, f := range []string{sdmodel.VocabFile, sdmodel.MergesFile} {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "models", "face0-synthfaces", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the shipped model's (%d vs %d bytes)", f, len(got), len(want))
		}
	}
}
