package clip

import (
	"strings"
	"unicode/utf8"
)

// Mojibake repair: text that was UTF-8, wrongly decoded as Latin-1 or
// Windows-1252 ("cafÃ©" for "café", "itâ€™s" for "it’s"). As in ftfy, a
// repair is only tried when the text looks bad, and it is kept only when the
// re-encoded bytes are valid UTF-8; ftfy's other source encodings (Windows-
// 1250/1251/1253/1254/1257, ISO-8859-2, MacRoman, CP437) are not attempted.

// fixEncoding repeats single repair steps until nothing changes, which also
// undoes mojibake applied twice ("cafÃƒÂ©").
func fixEncoding(text string) string {
	for i := 0; i < 16; i++ { // real text needs two or three; the bound is a guard
		next := fixEncodingStep(text)
		if next == text {
			break
		}
		text = next
	}
	return text
}

func fixEncodingStep(text string) string {
	if isASCII(text) || !looksBad(text) {
		return text
	}
	// The whole text, if it encodes in one of the two codecs and the bytes
	// are UTF-8. Latin-1 first, as ftfy does.
	for _, enc := range []func(rune) (byte, bool){latin1Byte, sloppy1252Byte} {
		if b, ok := encodeSingle(text, enc); ok && utf8.Valid(b) {
			return string(b)
		}
	}
	// Otherwise repair mojibake embedded in text that has other characters
	// too (a correctly encoded emoji next to a garbled word, say).
	if fixed := fixEmbedded(text); fixed != text {
		return fixed
	}
	// Last, read leftover C1 controls as Windows-1252. This must happen here,
	// before quotes are straightened, so that the next step can still see
	// "é€\x92" as the mojibake "é€’" of one CJK character.
	return fixC1(text)
}

func fixC1(s string) string {
	return strings.Map(func(r rune) rune {
		if 0x80 <= r && r <= 0x9F {
			return cp1252[r-0x80]
		}
		return r
	}, s)
}

func latin1Byte(r rune) (byte, bool) {
	if r <= 0xFF {
		return byte(r), true
	}
	return 0, false
}

// sloppy1252Byte encodes as Windows-1252, letting the five undefined bytes
// stand for the C1 controls of the same number.
func sloppy1252Byte(r rune) (byte, bool) {
	switch {
	case r < 0x80 || 0xA0 <= r && r <= 0xFF:
		return byte(r), true
	case r == 0x81 || r == 0x8D || r == 0x8F || r == 0x90 || r == 0x9D:
		return byte(r), true
	}
	b, ok := cp1252Byte[r]
	return b, ok
}

// mojiByte maps a rune to the byte it would have come from under Latin-1 or
// Windows-1252, for detection only.
func mojiByte(r rune) (byte, bool) {
	if b, ok := latin1Byte(r); ok {
		return b, true
	}
	b, ok := cp1252Byte[r]
	return b, ok
}

func encodeSingle(s string, enc func(rune) (byte, bool)) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := enc(r)
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// mojiSeq reports whether runes[i:] starts with a run of characters whose
// single-byte codes form one well-formed multi-byte UTF-8 character, and how
// many runes it spans. Lead bytes F1-F4 are left out, as in ftfy: they encode
// unassigned or private-use planes, so a match there is far more likely to
// be real Latin-1 text than mojibake.
func mojiSeq(runes []rune, i int) (n int, ok bool) {
	b0, ok := mojiByte(runes[i])
	if !ok {
		return 0, false
	}
	switch {
	case 0xC2 <= b0 && b0 <= 0xDF:
		n = 2
	case 0xE0 <= b0 && b0 <= 0xEF:
		n = 3
	case b0 == 0xF0 || b0 == 0xF3:
		n = 4
	default:
		return 0, false
	}
	if i+n > len(runes) {
		return 0, false
	}
	var buf [4]byte
	buf[0] = b0
	for k := 1; k < n; k++ {
		b, ok := mojiByte(runes[i+k])
		if !ok || b < 0x80 || b > 0xBF {
			return 0, false
		}
		buf[k] = b
	}
	return n, utf8.Valid(buf[:n])
}

// Characters in the continuation-byte range (0x80-0xBF in Latin-1/Windows-
// 1252) that real text often puts right after an accented letter, in two
// grades. commonMark: the no-break and soft hyphen, dashes, the ellipsis, the
// apostrophe ’ and the like, which follow letters in every context.
// quoteMark: quotes, guillemets, Spanish ¡ ¿, © ® ™ and the bullet, which
// may border a word ("CAFÉ”", "Pokémon™") but do not sit inside one
// ("É”s"). Anything else in that range after a lead letter ("€", "¼", "¶",
// "œ") is a strong sign of mojibake.
func commonMark(r rune) bool {
	switch r {
	case '\u00A0', '\u00AD', '·', '´', '–', '—', '…', '’':
		return true
	}
	return false
}

func quoteMark(r rune) bool {
	switch r {
	case '‘', '“', '”', '‚', '„', '‹', '›', '«', '»', '¡', '¿', '©', '®', '™', '•':
		return true
	}
	return false
}

// looksBad is the gate in front of every repair, in the spirit of ftfy's
// badness heuristic: text is bad when it has C1 control characters (no
// longer used on purpose; their presence means a decoding went wrong) or a
// convincing mojibake sequence.
func looksBad(text string) bool {
	runes := []rune(text)
	for i, r := range runes {
		if 0x80 <= r && r <= 0x9F {
			return true
		}
		if r < 0xC0 {
			continue
		}
		if n, ok := mojiSeq(runes, i); ok && convincing(runes, i, n) {
			return true
		}
	}
	return false
}

// convincing decides whether the well-formed sequence runes[i:i+n] is
// mojibake: yes if any continuation is neither a commonMark nor a quoteMark,
// if it holds two quoteMarks in a row ("ï»¿", a mangled byte order mark), or
// if it holds a quoteMark and a letter or digit follows. Â, Ã, Î and Ð are
// the commonest mojibake leads and almost never end a word in real text, so
// after them only ’ and … get the benefit of the doubt.
func convincing(runes []rune, i, n int) bool {
	cont := runes[i+1 : i+n]
	switch runes[i] {
	case 'Â', 'Ã', 'Î', 'Ð':
		if n == 2 && cont[0] != '’' && cont[0] != '…' {
			return true
		}
	}
	quoted := 0
	for _, r := range cont {
		switch {
		case quoteMark(r):
			quoted++
			if quoted == 2 {
				return true
			}
		case !commonMark(r):
			return true
		}
	}
	return quoted > 0 && i+n < len(runes) && isWordRune(runes[i+n])
}

func isWordRune(r rune) bool {
	return classOf(r) == classLetter || classOf(r) == classNumber || r == '_'
}

// fixEmbedded repairs maximal runs of mojibake sequences inside text that
// cannot be repaired as a whole. A run right after a stray continuation
// character is left alone: it is probably the tail of a larger garble, and
// fixing a fragment would make things worse.
func fixEmbedded(text string) string {
	runes := []rune(text)
	var b strings.Builder
	changed := false
	last := 0
	for i := 0; i < len(runes); {
		n, ok := mojiSeq(runes, i)
		if !ok || i > 0 && strictContinuation(runes[i-1]) {
			i++
			continue
		}
		j := i + n
		for j < len(runes) {
			m, ok := mojiSeq(runes, j)
			if !ok {
				break
			}
			j += m
		}
		// Judge the run on its own, as ftfy does: the text around it has
		// already failed to decode, so it is no evidence either way.
		if j-i < len(runes) && looksBad(string(runes[i:j])) {
			if fixed, ok := decodeRun(runes[i:j]); ok {
				b.WriteString(string(runes[last:i]))
				b.WriteString(fixed)
				last = j
				changed = true
			}
		}
		i = j
	}
	if !changed {
		return text
	}
	b.WriteString(string(runes[last:]))
	return b.String()
}

func decodeRun(run []rune) (string, bool) {
	for _, enc := range []func(rune) (byte, bool){latin1Byte, sloppy1252Byte} {
		if b, ok := encodeSingle(string(run), enc); ok && utf8.Valid(b) {
			return string(b), true
		}
	}
	return "", false
}

func strictContinuation(r rune) bool {
	b, ok := mojiByte(r)
	return ok && 0x80 <= b && b <= 0xBF && !commonMark(r) && !quoteMark(r)
}
