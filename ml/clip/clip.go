// Package clip is the CLIP BPE text tokenizer (openai/CLIP's SimpleTokenizer,
// also used by Stable Diffusion's text encoder), reimplemented in Go so that
// prompts give exactly the reference token ids.
//
// A Tokenizer is loaded once (LoadBPE, LoadHF or LoadDir) and is safe for
// concurrent use.
package clip

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Tokenizer turns prompts into CLIP token ids.
type Tokenizer struct {
	ranks     map[pairKey]pairVal
	byteID    [256]int // id of each byte symbol
	byteEndID [256]int // id of each byte symbol + "</w>"
	decoder   []string // id → token string ("" where known is false)
	known     []bool
	sot, eot  int
	cache     *wordCache
}

// Encode returns the BPE ids of text, without start and end tokens and
// without truncation. The text is cleaned exactly as the reference does:
// ftfy-style repair, HTML unescaping, whitespace collapsing, lower-casing.
func (t *Tokenizer) Encode(text string) []int {
	return t.encode(nil, text, -1)
}

// encode appends the ids of text to dst, stopping once dst holds limit ids
// (when limit >= 0), since Tokenize throws the rest away.
func (t *Tokenizer) encode(dst []int, text string, limit int) []int {
	text = clean(text)
	splitPieces(text, func(piece string) bool {
		switch piece {
		case startText:
			dst = append(dst, t.sot)
		case endText:
			dst = append(dst, t.eot)
		default:
			dst = t.appendWord(dst, piece)
		}
		return limit < 0 || len(dst) < limit
	})
	if limit >= 0 && len(dst) > limit {
		dst = dst[:limit]
	}
	return dst
}

func (t *Tokenizer) appendWord(dst []int, piece string) []int {
	if ids, ok := t.cache.get(piece); ok {
		return append(dst, ids...)
	}
	start := len(dst)
	dst = t.bpeWord(dst, piece)
	t.cache.put(piece, append([]int(nil), dst[start:]...))
	return dst
}

// Option configures Tokenize.
type Option func(*tokenizeOpts)

type tokenizeOpts struct {
	n   int
	pad int32
}

// WithContextLength sets the output length (default 77, CLIP's context).
// n must be at least 1; a smaller value panics, like a negative slice length.
func WithContextLength(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("clip: WithContextLength(%d): the context length must be at least 1", n))
	}
	return func(o *tokenizeOpts) { o.n = n }
}

// WithPadToken sets the id that fills the output after the end token.
// The default 0 matches openai/CLIP's clip.tokenize. Stable Diffusion's
// Hugging Face CLIPTokenizer pads with the end token instead:
// WithPadToken(clip.EndToken). The text encoder attends causally and SD
// reads the hidden states of every position, so the pad id does change its
// output: use the one the model was trained with.
func WithPadToken(id int32) Option {
	return func(o *tokenizeOpts) { o.pad = id }
}

// Tokenize returns exactly n ids (77 unless WithContextLength says
// otherwise): the start token, the ids of text, the end token, then padding.
// Text too long to fit is cut, as clip.tokenize(..., truncate=True) does:
// the first n ids are kept and the last of them becomes the end token.
func (t *Tokenizer) Tokenize(text string, opts ...Option) []int32 {
	o := tokenizeOpts{n: 77}
	for _, opt := range opts {
		opt(&o)
	}
	ids := make([]int, 0, o.n+1)
	ids = append(ids, t.sot)
	// Ask for one id more than fits: that is enough to know truncation
	// happened, and the end token then takes the last slot.
	ids = t.encode(ids, text, o.n)
	ids = append(ids, t.eot)
	if len(ids) > o.n {
		ids = ids[:o.n]
		ids[o.n-1] = t.eot
	}
	out := make([]int32, o.n)
	for i := range out {
		if i < len(ids) {
			out[i] = int32(ids[i])
		} else {
			out[i] = o.pad
		}
	}
	return out
}

// Decode turns ids back into text, as the reference decoder does: token
// strings are joined, mapped back to bytes and read as UTF-8 (bad sequences
// become U+FFFD), and each "</w>" word end becomes a space. Special tokens
// come out as their literal text; ids the vocabulary does not have are
// skipped. Unlike the reference, and like Hugging Face's decoder, the result
// is trimmed of surrounding spaces.
//
// Decoding does not undo the cleaning: the result is lower-case, and
// punctuation comes out as separate words ("hi , there").
func (t *Tokenizer) Decode(ids []int) string {
	var raw []byte
	for _, id := range ids {
		if id < 0 || id >= len(t.decoder) || !t.known[id] {
			continue
		}
		for _, r := range t.decoder[id] {
			if b, ok := runeBytes[r]; ok {
				raw = append(raw, b)
			} else {
				raw = utf8.AppendRune(raw, r)
			}
		}
	}
	text := strings.ReplaceAll(pyDecodeUTF8(raw), endOfWord, " ")
	return strings.TrimSpace(text)
}

// pyDecodeUTF8 decodes like Python's bytes.decode("utf-8", "replace"): each
// maximal ill-formed subpart becomes one U+FFFD, so a character cut short
// gives one replacement rather than one per byte.
func pyDecodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			sb.WriteRune(r)
			b = b[size:]
			continue
		}
		sb.WriteRune(utf8.RuneError)
		b = b[illFormedLen(b):]
	}
	return sb.String()
}

// illFormedLen is the length of the maximal prefix of b that could start a
// well-formed sequence (at least 1), per the Unicode "maximal subpart" rule.
func illFormedLen(b []byte) int {
	n, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		n = 2
	case c == 0xE0:
		n, lo = 3, 0xA0
	case c == 0xED:
		n, hi = 3, 0x9F
	case 0xE1 <= c && c <= 0xEF:
		n = 3
	case c == 0xF0:
		n, lo = 4, 0x90
	case 0xF1 <= c && c <= 0xF3:
		n = 4
	case c == 0xF4:
		n, hi = 4, 0x8F
	default:
		return 1
	}
	k := 1
	for ; k < n && k < len(b); k++ {
		if b[k] < lo || b[k] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return k
}
