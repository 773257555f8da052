package clip

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// clean is the reference's text preparation:
//
//	ftfy.fix_text → html.unescape twice → strip → collapse whitespace → lower()
func clean(text string) string {
	text = validUTF8(text)
	text = fixText(text)
	text = pyUnescape(pyUnescape(text))
	// strings.Fields splits on unicode.IsSpace, which is exactly the regex
	// module's \s; Python's strip() also counts U+001C-U+001F, but by now
	// those are gone (ftfy drops them and html.unescape refuses them).
	text = strings.Join(strings.Fields(text), " ")
	return pyLower(text)
}

// validUTF8 replaces each byte of an invalid sequence with U+FFFD. A Python
// str cannot hold such bytes, so there is no reference behaviour to match;
// doing it first keeps every later step simple.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // ranging yields U+FFFD per bad byte
		b.WriteRune(r)
	}
	return b.String()
}

// pyLower is Python's str.lower: the full Unicode lower-case mapping, which
// differs from the per-rune simple mapping in two places: İ (U+0130) becomes
// "i" + U+0307, and capital sigma becomes final ς at the end of a word.
func pyLower(s string) string {
	if isASCII(s) {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i, r := range s {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if finalSigma(s, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma applies Unicode's Final_Sigma condition to the Σ at byte i: a
// cased letter before it and none after it, skipping case-ignorable
// characters (accents, apostrophes, periods...) on both sides.
func finalSigma(s string, i int) bool {
	before := s[:i]
	for len(before) > 0 {
		r, size := utf8.DecodeLastRuneInString(before)
		before = before[:len(before)-size]
		if caseIgnorable(r) {
			continue
		}
		if !cased(r) {
			return false
		}
		goto after
	}
	return false
after:
	for _, r := range s[i+len("Σ"):] {
		if caseIgnorable(r) {
			continue
		}
		return !cased(r)
	}
	return true
}

// cased is the Unicode property Cased.
func cased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// caseIgnorable is the Unicode property Case_Ignorable: marks, format
// characters, modifier letters and symbols, and the Word_Break classes
// MidLetter, MidNumLet and Single_Quote.
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '·', '\u0387', '\u055F', '\u05F4', '\u2018', '\u2019', '\u2024',
		'\u2027', '\uFE13', '\uFE52', '\uFE55', '\uFF07', '\uFF0E', '\uFF1A':
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
