package synthfaces

import (
	"image/png"
	"os"
	"testing"
)

// TestWriteGrid writes a sample grid (identities 0..7 of seed 1, one per row,
// four images each, 96 px) when SYNTHFACES_GRID names a file; testdata/grid.png
// is made this way.
func TestWriteGrid(t *testing.T) {
	path := os.Getenv("SYNTHFACES_GRID")
	if path == "" {
		t.Skip("set SYNTHFACES_GRID=/tmp/grid.png to write a sample grid")
	}
	ids := []int{0, 1, 2, 3, 4, 5, 6, 7}
	g := Grid(1, ids, 4, RenderOptions{Size: 96})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, g); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:2] {
		for j := 0; j < 4; j++ {
			t.Log(Caption(RenderSample(1, id, j, RenderOptions{Size: 16}).Scene))
		}
	}
}
