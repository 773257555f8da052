package clip

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/internal/testenv"
)

// tinyVocab is a complete, valid vocabulary in the HF layout with only two
// merges, small enough to write by hand in error tests.
func tinyVocab() map[string]int {
	m := map[string]int{}
	for i, s := range baseSymbols() {
		m[s] = i
		m[s+endOfWord] = 256 + i
	}
	m["ca"] = 512
	m["cat</w>"] = 513
	m[startText] = 514
	m[endText] = 515
	return m
}

const tinyMerges = "#version: 0.2\nc a\nca t</w>\n"

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, string(b))
}

func TestLoadHFTiny(t *testing.T) {
	dir := t.TempDir()
	tok, err := LoadHF(writeJSON(t, dir, "vocab.json", tinyVocab()), writeFile(t, dir, "merges.txt", tinyMerges))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Tokenize("Cat", WithContextLength(4)); got[0] != 514 || got[1] != 513 || got[2] != 515 {
		t.Errorf("Tokenize(Cat) = %v, want the vocabulary's own special ids around 513", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	goodVocab := writeJSON(t, dir, "vocab.json", tinyVocab())
	goodMerges := writeFile(t, dir, "merges.txt", tinyMerges)

	noSpecial := tinyVocab()
	delete(noSpecial, endText)
	dupID := tinyVocab()
	dupID["zz"] = 512
	noByte := tinyVocab()
	delete(noByte, "a")

	var gzBuf strings.Builder
	zw := gzip.NewWriter(&gzBuf)
	zw.Write([]byte("#version: 0.2\ni n\nt h\n"))
	zw.Close()

	tests := []struct {
		name string
		load func() (*Tokenizer, error)
		want []string // substrings the error must contain
	}{
		{"missing bpe file", func() (*Tokenizer, error) { return LoadBPE(filepath.Join(dir, "nope.txt.gz")) }, []string{"nope.txt.gz", "bpe_simple_vocab_16e6.txt.gz"}},
		{"bpe with too few merges", func() (*Tokenizer, error) { return LoadBPE(writeFile(t, dir, "short.txt.gz", gzBuf.String())) }, []string{"short.txt.gz", "has 2 merges", "48894"}},
		{"corrupt gzip", func() (*Tokenizer, error) { return LoadBPE(writeFile(t, dir, "bad.gz", "\x1f\x8bnot gzip")) }, []string{"bad.gz", "gzip"}},
		{"malformed merge line", func() (*Tokenizer, error) {
			return LoadHF(goodVocab, writeFile(t, dir, "m1.txt", "#version: 0.2\nc a\nca t</w> x\n"))
		}, []string{"m1.txt:3", "malformed merge", "two symbols"}},
		{"blank line inside merges", func() (*Tokenizer, error) {
			return LoadHF(goodVocab, writeFile(t, dir, "m2.txt", "#version: 0.2\nc a\n\nca t</w>\n"))
		}, []string{"m2.txt:3", "blank line"}},
		{"empty merges", func() (*Tokenizer, error) { return LoadHF(goodVocab, writeFile(t, dir, "m3.txt", "")) }, []string{"m3.txt", "empty"}},
		{"merge not in vocab", func() (*Tokenizer, error) {
			return LoadHF(goodVocab, writeFile(t, dir, "m4.txt", "#version: 0.2\nc a\nca b</w>\n"))
		}, []string{"merges line 3", `"cab</w>"`, "do not belong together"}},
		{"missing vocab", func() (*Tokenizer, error) { return LoadHF(filepath.Join(dir, "none.json"), goodMerges) }, []string{"none.json"}},
		{"missing merges", func() (*Tokenizer, error) { return LoadHF(goodVocab, filepath.Join(dir, "none.txt")) }, []string{"none.txt"}},
		{"vocab not JSON", func() (*Tokenizer, error) { return LoadHF(writeFile(t, dir, "v1.json", "[1,2]"), goodMerges) }, []string{"v1.json", "JSON object"}},
		{"no end token", func() (*Tokenizer, error) { return LoadHF(writeJSON(t, dir, "v2.json", noSpecial), goodMerges) }, []string{"v2.json", endText}},
		{"duplicate id", func() (*Tokenizer, error) { return LoadHF(writeJSON(t, dir, "v3.json", dupID), goodMerges) }, []string{"v3.json", "share id 512"}},
		{"missing byte symbol", func() (*Tokenizer, error) { return LoadHF(writeJSON(t, dir, "v4.json", noByte), goodMerges) }, []string{"v4.json", `"a"`, "byte 0x61"}},
		{"dir without tokenizer", func() (*Tokenizer, error) { return LoadDir(t.TempDir()) }, []string{"tokenizer/vocab.json", "LoadBPE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tc.load()
			if err == nil {
				t.Fatalf("got a tokenizer (%v), want an error", tok != nil)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadBPEPlainText(t *testing.T) {
	gz := gzTokenizer(t)
	f, err := os.Open(testenv.Shared(t, "clip", "bpe_simple_vocab_16e6.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "vocab.txt")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	w.Close()
	plain, err := LoadBPE(out)
	if err != nil {
		t.Fatalf("LoadBPE(plain text): %v", err)
	}
	s := "a plain-text vocabulary works too"
	if a, b := plain.Encode(s), gz.Encode(s); !slices.Equal(a, b) {
		t.Errorf("plain %v, gz %v", a, b)
	}
}
