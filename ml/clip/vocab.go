package clip

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Ids of the two special tokens in the standard CLIP vocabulary (the one in
// bpe_simple_vocab_16e6.txt.gz and in every Stable Diffusion 1.x/2.x
// tokenizer folder). A vocabulary loaded with LoadHF may place them elsewhere;
// the Tokenizer always uses the ids its own vocabulary gives.
const (
	StartToken = 49406 // <|startoftext|>
	EndToken   = 49407 // <|endoftext|>
)

const (
	startText = "<|startoftext|>"
	endText   = "<|endoftext|>"
	endOfWord = "</w>"

	// numMerges is how many merge lines the reference reads: it slices the
	// file as lines[1:49152-256-2+1], so a vocabulary of 49152-... = 49408
	// ids. The .gz file holds far more merges than that; the rest are ignored,
	// and the Hugging Face loader applies the same cap so that both formats
	// give the same ids.
	numMerges = 49152 - 256 - 2
)

// byteRunes is GPT-2's byte-to-unicode table: every byte gets a printable
// rune so that BPE can work on strings without whitespace or control
// characters. Printable Latin-1 bytes map to themselves; the other 68 bytes
// are moved, in increasing order, to U+0100 onwards.
var byteRunes, runeBytes = func() ([256]rune, map[rune]byte) {
	var tab [256]rune
	inv := make(map[rune]byte, 256)
	keep := func(b int) bool {
		return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if keep(b) {
			tab[b] = rune(b)
		} else {
			tab[b] = next
			next++
		}
		inv[tab[b]] = byte(b)
	}
	return tab, inv
}()

// baseSymbols lists the 256 byte symbols in the order the reference puts them
// in its vocabulary: the kept bytes first, in byte order, then the moved ones.
func baseSymbols() []string {
	out := make([]string, 0, 256)
	for b := 0; b < 256; b++ {
		if byteRunes[b] < 256 {
			out = append(out, string(byteRunes[b]))
		}
	}
	for b := 0; b < 256; b++ {
		if byteRunes[b] >= 256 {
			out = append(out, string(byteRunes[b]))
		}
	}
	return out
}

// merge is one parsed merges line.
type merge struct {
	a, b string
	line int // 1-based line number in its file, for error messages
}

// LoadBPE loads the original openai/CLIP vocabulary file
// bpe_simple_vocab_16e6.txt.gz. A plain-text (already gunzipped) copy works
// too: the gzip header, not the file name, decides.
//
// The vocabulary is built the way the reference builds it: the 256 byte
// symbols, the same with "</w>" appended, the first 48,894 merges in order,
// then <|startoftext|> and <|endoftext|>.
func LoadBPE(path string) (*Tokenizer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clip: read BPE vocabulary: %w (pass the path of bpe_simple_vocab_16e6.txt.gz)", err)
	}
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("clip: %s: bad gzip header: %w", path, err)
		}
		raw, err = io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("clip: %s: gunzip: %w (the file is truncated or corrupt; fetch it again)", path, err)
		}
	}
	merges, err := parseMerges(path, raw)
	if err != nil {
		return nil, err
	}
	if len(merges) < numMerges {
		return nil, fmt.Errorf("clip: %s: has %d merges, the CLIP vocabulary needs %d (is this the right file?)", path, len(merges), numMerges)
	}
	merges = merges[:numMerges]

	base := baseSymbols()
	vocab := make([]string, 0, 2*len(base)+len(merges)+2)
	vocab = append(vocab, base...)
	for _, s := range base {
		vocab = append(vocab, s+endOfWord)
	}
	for _, m := range merges {
		vocab = append(vocab, m.a+m.b)
	}
	vocab = append(vocab, startText, endText)

	// Later entries win on duplicate strings, as with Python's
	// dict(zip(vocab, range(len(vocab)))).
	enc := make(map[string]int, len(vocab))
	for id, s := range vocab {
		enc[s] = id
	}
	return build(path, enc, merges)
}

// LoadHF loads the Hugging Face / Stable Diffusion layout: a vocab.json that
// maps token strings to ids and a merges.txt whose first line is a
// "#version" header. As in Hugging Face's CLIPTokenizer, at most 48,894 merges
// are read.
func LoadHF(vocabJSON, mergesTXT string) (*Tokenizer, error) {
	vraw, err := os.ReadFile(vocabJSON)
	if err != nil {
		return nil, fmt.Errorf("clip: read vocab.json: %w", err)
	}
	var enc map[string]int
	if err := json.Unmarshal(vraw, &enc); err != nil {
		return nil, fmt.Errorf("clip: %s: not a JSON object of token→id: %w", vocabJSON, err)
	}
	// Ids must be unique: BPE works on ids, so two strings sharing one id
	// would silently merge symbols that the reference keeps apart.
	seen := make(map[int]string, len(enc))
	for s, id := range enc {
		if id < 0 {
			return nil, fmt.Errorf("clip: %s: token %q has negative id %d", vocabJSON, s, id)
		}
		if other, dup := seen[id]; dup {
			a, b := other, s
			if a > b {
				a, b = b, a
			}
			return nil, fmt.Errorf("clip: %s: tokens %q and %q share id %d; the vocabulary is corrupt", vocabJSON, a, b, id)
		}
		seen[id] = s
	}
	mraw, err := os.ReadFile(mergesTXT)
	if err != nil {
		return nil, fmt.Errorf("clip: read merges.txt: %w", err)
	}
	merges, err := parseMerges(mergesTXT, mraw)
	if err != nil {
		return nil, err
	}
	if len(merges) > numMerges {
		merges = merges[:numMerges]
	}
	return build(vocabJSON, enc, merges)
}

// LoadDir loads the tokenizer of a Stable Diffusion model folder, the
// diffusers layout dir/tokenizer/{vocab.json,merges.txt}. A folder that holds
// the two files itself is accepted too.
func LoadDir(dir string) (*Tokenizer, error) {
	for _, d := range []string{filepath.Join(dir, "tokenizer"), dir} {
		v, m := filepath.Join(d, "vocab.json"), filepath.Join(d, "merges.txt")
		if fileExists(v) && fileExists(m) {
			return LoadHF(v, m)
		}
	}
	return nil, fmt.Errorf("clip: %s: no tokenizer/vocab.json and tokenizer/merges.txt found; pass the model folder (the one that contains tokenizer/) or use LoadBPE for bpe_simple_vocab_16e6.txt.gz", dir)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// parseMerges reads up to numMerges merge lines "a b" after the header line.
// The reference skips line 1 whatever it says and splits on whitespace; blank
// lines at the end (the file ends with a newline) are ignored, but any other
// line must hold exactly two symbols.
func parseMerges(path string, raw []byte) ([]merge, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var out []merge
	n := 0
	blankAt := 0
	for sc.Scan() {
		n++
		if n == 1 {
			continue // "#version: ..." header
		}
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			if blankAt == 0 {
				blankAt = n
			}
			continue
		}
		if blankAt != 0 {
			return nil, fmt.Errorf("clip: %s:%d: blank line inside the merges list; remove it", path, blankAt)
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("clip: %s:%d: malformed merge %q: want two symbols separated by a space", path, n, line)
		}
		out = append(out, merge{a: f[0], b: f[1], line: n})
		if len(out) == numMerges {
			break // the reference reads no further
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("clip: %s:%d: %w", path, n+1, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("clip: %s: empty merges file", path)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("clip: %s: no merges after the header line", path)
	}
	return out, nil
}

// build checks that vocabulary and merges agree and prepares the id tables.
func build(src string, enc map[string]int, merges []merge) (*Tokenizer, error) {
	t := &Tokenizer{
		ranks: make(map[pairKey]pairVal, len(merges)),
		cache: newWordCache(wordCacheSize),
	}
	maxID := 0
	for _, id := range enc {
		maxID = max(maxID, id)
	}
	t.decoder = make([]string, maxID+1)
	t.known = make([]bool, maxID+1)
	for s, id := range enc {
		t.decoder[id] = s
		t.known[id] = true
	}
	var ok bool
	if t.sot, ok = enc[startText]; !ok {
		return nil, fmt.Errorf("clip: %s: vocabulary lacks %s; this is not a CLIP vocabulary", src, startText)
	}
	if t.eot, ok = enc[endText]; !ok {
		return nil, fmt.Errorf("clip: %s: vocabulary lacks %s; this is not a CLIP vocabulary", src, endText)
	}
	// Every byte must be encodable on its own, or some input would have no ids.
	for b := 0; b < 256; b++ {
		s := string(byteRunes[b])
		if t.byteID[b], ok = enc[s]; !ok {
			return nil, fmt.Errorf("clip: %s: vocabulary lacks the byte symbol %q (byte 0x%02x); this is not a byte-level CLIP vocabulary", src, s, b)
		}
		if t.byteEndID[b], ok = enc[s+endOfWord]; !ok {
			return nil, fmt.Errorf("clip: %s: vocabulary lacks the byte symbol %q (byte 0x%02x)", src, s+endOfWord, b)
		}
	}
	for rank, m := range merges {
		a, okA := enc[m.a]
		b, okB := enc[m.b]
		ab, okAB := enc[m.a+m.b]
		if !okA || !okB || !okAB {
			missing := m.a + m.b
			switch {
			case !okA:
				missing = m.a
			case !okB:
				missing = m.b
			}
			return nil, fmt.Errorf("clip: merges line %d (%q %q): %q is not in the vocabulary of %s; vocab.json and merges.txt do not belong together", m.line, m.a, m.b, missing, src)
		}
		// Later duplicates win, as with the reference's dict(zip(merges, range)).
		t.ranks[pairKey{int32(a), int32(b)}] = pairVal{rank: int32(rank), merged: int32(ab)}
	}
	return t, nil
}
