package editor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestFSHasIndex(t *testing.T) {
	b, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatalf("the embedded editor has no index.html (run make editor): %v", err)
	}
	if !bytes.Contains(b, []byte(`<div id="root">`)) || !bytes.Contains(b, []byte("assets/")) {
		t.Fatalf("index.html does not look like the built editor:\n%s", b)
	}
	// Every asset index.html names is embedded.
	for _, part := range strings.Split(string(b), `"`) {
		if strings.HasPrefix(part, "./assets/") {
			if _, err := fs.Stat(FS(), strings.TrimPrefix(part, "./")); err != nil {
				t.Errorf("index.html names %s, which is not embedded: %v", part, err)
			}
		}
	}
}

// sourceStamp hashes the sources as stamp.sh does: sha256 of the lines
// "<sha256 hex>  <path>\n", files sorted by path.
func sourceStamp(t *testing.T) string {
	files := []string{"index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"}
	err := filepath.WalkDir("src", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var list strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&list, "%s  %s\n", hex.EncodeToString(sum[:]), f)
	}
	sum := sha256.Sum256([]byte(list.String()))
	return hex.EncodeToString(sum[:])
}

func TestBuildStamp(t *testing.T) {
	want, err := fs.ReadFile(FS(), "build-stamp.txt")
	if err != nil {
		t.Fatalf("dist/build-stamp.txt is missing: run make editor (%v)", err)
	}
	if got := sourceStamp(t); got != strings.TrimSpace(string(want)) {
		t.Fatalf("the editor's sources changed since dist/ was built (stamp %s, sources %s): run make editor and commit editor/dist",
			strings.TrimSpace(string(want)), got)
	}
}
