package clip

import (
	"unicode"
	"unicode/utf8"
)

// splitPieces is a hand-written matcher for the reference's pre-tokenising
// pattern, applied (as in the reference) with IGNORECASE:
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// At each position the alternatives are tried in order and the first that
// matches wins; anything matching none (whitespace) is skipped. Because each
// alternative is a literal or a greedy run of one class, no backtracking is
// ever needed, so a scanner reproduces Python regex's findall exactly, in
// linear time. Two IGNORECASE effects of the Python regex module are kept:
// 'ſ' (U+017F) matches 's' in the literals, and U+0345 (which case-folds to
// a letter) is matched by neither the letter class nor its negation, so it
// is skipped like whitespace.
//
// yield receives each piece; returning false stops the scan.
func splitPieces(text string, yield func(piece string) bool) {
	i := 0
	for i < len(text) {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == '<' {
			if n := matchFold(text[i:], startText); n > 0 {
				if !yield(text[i : i+n]) {
					return
				}
				i += n
				continue
			}
			if n := matchFold(text[i:], endText); n > 0 {
				if !yield(text[i : i+n]) {
					return
				}
				i += n
				continue
			}
		}
		if r == '\'' {
			if n := matchContraction(text[i:]); n > 0 {
				if !yield(text[i : i+n]) {
					return
				}
				i += n
				continue
			}
		}
		c := classOf(r)
		switch c {
		case classSpace, classNone:
			i += size
			continue
		case classNumber:
			if !yield(text[i : i+size]) {
				return
			}
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			r2, s2 := utf8.DecodeRuneInString(text[j:])
			if classOf(r2) != c {
				break
			}
			j += s2
		}
		if !yield(text[i:j]) {
			return
		}
		i = j
	}
}

type runeClass uint8

const (
	classOther runeClass = iota
	classLetter
	classNumber
	classSpace
	classNone // matched by no alternative
)

func classOf(r rune) runeClass {
	switch {
	case r < utf8.RuneSelf:
		switch {
		case 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z':
			return classLetter
		case '0' <= r && r <= '9':
			return classNumber
		case r == ' ' || '\t' <= r && r <= '\r':
			return classSpace
		}
		return classOther
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r): // the same set as the regex module's \s
		return classSpace
	case r == '\u0345':
		return classNone
	}
	return classOther
}

var contractions = [...]string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// matchContraction returns the byte length of the contraction at the start
// of s, or 0. The order is the pattern's; no contraction is a prefix of a
// later one, so order only matters for documentation.
func matchContraction(s string) int {
	for _, c := range contractions {
		if n := matchFold(s, c); n > 0 {
			return n
		}
	}
	return 0
}

// matchFold reports the byte length of the prefix of s that matches the
// ASCII literal lit case-insensitively (with simple case folding, as the
// regex module's IGNORECASE), or 0.
func matchFold(s, lit string) int {
	i := 0
	for k := 0; k < len(lit); k++ {
		if i >= len(s) {
			return 0
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !foldEq(r, rune(lit[k])) {
			return 0
		}
		i += size
	}
	return i
}

func foldEq(r, c rune) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}
