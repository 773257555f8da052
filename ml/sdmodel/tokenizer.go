package sdmodel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// clipMerges is how many merges CLIP's vocabulary uses (49152 - 256 - 2);
// the .gz file holds more, which the reference ignores.
const clipMerges = 49152 - 256 - 2

// byteSymbols is GPT-2/CLIP's byte-to-unicode table in vocabulary order:
// printable Latin-1 bytes stand for themselves, in byte order, then the 68
// other bytes mapped to U+0100 onwards.
func byteSymbols() []string {
	keep := func(b int) bool {
		return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
	}
	var out, moved []string
	next := rune(256)
	for b := 0; b < 256; b++ {
		if keep(b) {
			out = append(out, string(rune(b)))
		} else {
			moved = append(moved, string(next))
			next++
		}
	}
	return append(out, moved...)
}

// vocabulary is a CLIP BPE vocabulary: the tokens in id order and the merges.
type vocabulary struct {
	tokens []string
	merges [][2]string
}

// newVocabulary builds the vocabulary the way CLIP does: byte symbols, the
// same with "</w>", one token per merge, then the two special tokens.
func newVocabulary(merges [][2]string) vocabulary {
	base := byteSymbols()
	v := vocabulary{merges: merges}
	v.tokens = append(v.tokens, base...)
	for _, s := range base {
		v.tokens = append(v.tokens, s+"</w>")
	}
	for _, m := range merges {
		v.tokens = append(v.tokens, m[0]+m[1])
	}
	v.tokens = append(v.tokens, "<|startoftext|>", "<|endoftext|>")
	return v
}

// clipVocabulary reads bpe_simple_vocab_16e6.txt.gz (or a gunzipped copy).
func clipVocabulary(path string) (vocabulary, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return vocabulary{}, fmt.Errorf("sdmodel: read CLIP vocabulary: %w", err)
	}
	return parseCLIPVocabulary(path, raw)
}

// parseCLIPVocabulary builds the vocabulary from the BPE file's bytes
// (gzipped or not); name is for errors.
func parseCLIPVocabulary(path string, raw []byte) (vocabulary, error) {
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return vocabulary{}, fmt.Errorf("sdmodel: %s: %w", path, err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return vocabulary{}, fmt.Errorf("sdmodel: %s: gunzip: %w (truncated or corrupt?)", path, err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	var merges [][2]string
	for line := 0; sc.Scan() && len(merges) < clipMerges; line++ {
		if line == 0 {
			continue // "#version: 0.2" header
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return vocabulary{}, fmt.Errorf("sdmodel: %s: line %d is not a merge pair", path, line+1)
		}
		merges = append(merges, [2]string{f[0], f[1]})
	}
	if len(merges) < clipMerges {
		return vocabulary{}, fmt.Errorf("sdmodel: %s: has %d merges, CLIP's vocabulary needs %d", path, len(merges), clipMerges)
	}
	return newVocabulary(merges), nil
}

// tinyWords seed the small vocabulary's merges: common prompt words, so
// prompts tokenise to few ids (merges from different words interact, as in
// any BPE, so not every word ends up as a single id).
var tinyWords = []string{"a", "photo", "of", "the", "person", "face", "man", "woman",
	"portrait", "painting", "smiling", "in", "with", "and", "style", "cat", "dog", "red", "blue", "green"}

// tinyVocabulary is a valid CLIP-format vocabulary with merges only for
// tinyWords: every other word falls back to byte symbols.
func tinyVocabulary() vocabulary {
	seen := map[string]bool{}
	var merges [][2]string
	for _, w := range tinyWords {
		// Merge left to right: "p h", "ph o", "pho t", "phot o</w>".
		cur := w[:1]
		for i := 1; i < len(w); i++ {
			next := w[i : i+1]
			if i == len(w)-1 {
				next += "</w>"
			}
			if !seen[cur+next] {
				seen[cur+next] = true
				merges = append(merges, [2]string{cur, next})
			}
			cur += next
		}
	}
	return newVocabulary(merges)
}

// write saves vocab.json (token → id, in id order, without HTML escaping,
// as Hugging Face writes it) and merges.txt.
func (v vocabulary) write(vocabPath, mergesPath string) error {
	var b bytes.Buffer
	b.WriteString("{")
	for id, tok := range v.tokens {
		if id > 0 {
			b.WriteString(",")
		}
		var k bytes.Buffer
		enc := json.NewEncoder(&k)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(tok); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%d", bytes.TrimSpace(k.Bytes()), id)
	}
	b.WriteString("}\n")
	if err := os.WriteFile(vocabPath, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("sdmodel: %w", err)
	}
	var m bytes.Buffer
	m.WriteString("#version: 0.2\n")
	for _, mg := range v.merges {
		m.WriteString(mg[0] + " " + mg[1] + "\n")
	}
	if err := os.WriteFile(mergesPath, m.Bytes(), 0o644); err != nil {
		return fmt.Errorf("sdmodel: %w", err)
	}
	return nil
}
