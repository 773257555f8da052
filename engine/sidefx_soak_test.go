//go:build soak

package engine_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSoakSideEffects runs a writer many times while its files, folders and
// cache entries are disturbed at random between runs, and checks after every
// run that each reported file is there with the node's content, that the
// node never left two copies of one content in a folder, and that a file the
// "user" replaced was never overwritten.
func TestSoakSideEffects(t *testing.T) {
	r := newSideEffectRig(t)
	folders := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	rng := rand.New(rand.NewPCG(1, 2))
	user := map[string]bool{} // files replaced by the "user"
	for round := range 3000 {
		out := folders[rng.IntN(len(folders))]
		value := rng.IntN(3) // a few contents, so that results repeat
		doc := `{"version":1,"nodes":[
			{"id":"c","type":"Const","inputs":{"value":` + strconv.Itoa(value) + `}},
			{"id":"w","type":"WriteText","inputs":{"value":{"node":"c","output":"INT"},"prefix":"s"}},
			{"id":"after","type":"Add","inputs":{"a":{"node":"w","output":"INT"},"b":1}}]}`
		files, _ := filepath.Glob(filepath.Join(out, "*.txt"))
		switch op := rng.IntN(6); {
		case op == 0 && len(files) > 0:
			os.Remove(files[rng.IntN(len(files))])
		case op == 1 && len(files) > 0:
			f := files[rng.IntN(len(files))]
			os.WriteFile(f, []byte("user "+strconv.Itoa(round)), 0o644)
			user[f] = true
		case op == 2:
			os.RemoveAll(out)
			for f := range user {
				if filepath.Dir(f) == out {
					delete(user, f)
				}
			}
		}
		res, _ := r.runIn(t, out, doc)
		written(t, res, "w", out, strconv.Itoa(value)+"\n")
		seen := map[string]string{}
		files, _ = filepath.Glob(filepath.Join(out, "*.txt"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if user[f] {
				if !strings.HasPrefix(string(b), "user ") {
					t.Fatalf("round %d: the user's %s was overwritten: %q", round, f, b)
				}
				continue
			}
			if prev, dup := seen[string(b)]; dup {
				t.Fatalf("round %d: %s and %s both hold %q", round, prev, f, b)
			}
			seen[string(b)] = f
		}
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}
