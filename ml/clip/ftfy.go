package clip

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// This file holds the subset of ftfy.fix_text (default settings, ftfy 6.x)
// that the CLIP reference runs on every prompt. The steps and their order are
// ftfy's; the mojibake detector is a smaller heuristic of our own built on
// the same idea (see looksBad). README.md lists what is left out.

// cp1252 gives the characters Windows-1252 assigns to bytes 0x80-0x9F. The
// five bytes it leaves undefined decode to the C1 control of the same number,
// as in ftfy's "sloppy" codec and in browsers.
var cp1252 = [32]rune{
	'€', '\u0081', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u008d', 'Ž', '\u008f',
	'\u0090', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u009d', 'ž', 'Ÿ',
}

var cp1252Byte = func() map[rune]byte {
	m := make(map[rune]byte, 32)
	for i, r := range cp1252 {
		m[r] = byte(0x80 + i)
	}
	return m
}()

// maxSegment is ftfy's max_decode_length: lines longer than this many code
// points are fixed in pieces.
const maxSegment = 1_000_000

// fixText applies the ftfy steps to text. Like ftfy it works line by line,
// so mojibake on one line does not decide the fate of another, and once a
// line contains '<' (the text may be real HTML) entity decoding is off for
// that line and every later one.
func fixText(text string) string {
	if isASCII(text) && !needsASCIIFix(text) {
		return text
	}
	var out strings.Builder
	out.Grow(len(text))
	unescape := true
	for len(text) > 0 {
		end := strings.IndexByte(text, '\n') + 1
		if end == 0 {
			end = len(text)
		}
		seg := text[:end]
		if n := utf8.RuneCountInString(seg); n > maxSegment {
			seg = text[:byteOffset(text, maxSegment)]
		}
		if unescape && strings.Contains(seg, "<") {
			unescape = false
		}
		out.WriteString(fixSegment(seg, unescape))
		text = text[len(seg):]
	}
	return out.String()
}

func byteOffset(s string, runes int) int {
	for i := range s {
		if runes == 0 {
			return i
		}
		runes--
	}
	return len(s)
}

// needsASCIIFix reports whether ASCII text has anything ftfy would change:
// entities, control characters or carriage returns.
func needsASCIIFix(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '&' || c < 0x20 && c != '\t' && c != '\n' || c == 0x7F {
			return true
		}
	}
	return false
}

// fixSegment runs the fixers until the text stops changing, as ftfy does.
func fixSegment(text string, unescape bool) string {
	for {
		orig := text
		if unescape {
			text = ftfyUnescape(text)
		}
		text = fixEncoding(text)
		text = mapRunes(text)
		text = fixLineBreaks(text)
		text = removeTerminalEscapes(text)
		text = removeControlChars(text)
		text = norm.NFC.String(text)
		if text == orig {
			return text
		}
	}
}

// mapRunes does ftfy's per-character fixes, in ftfy's order: C1 controls as
// Windows-1252, Latin ligatures split, half/fullwidth forms to normal width,
// curly quotes straightened.
func mapRunes(text string) string {
	if isASCII(text) {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	for _, r := range text {
		if 0x80 <= r && r <= 0x9F {
			r = cp1252[r-0x80]
		}
		s := ""
		if lig, ok := ligatures[r]; ok {
			s = lig
		} else if w, ok := widthForm(r); ok {
			s = w
		} else {
			b.WriteRune(uncurl(r))
			continue
		}
		for _, q := range s {
			b.WriteRune(uncurl(q))
		}
	}
	return b.String()
}

// ligatures lists the Latin ligatures and legacy digraphs ftfy splits. Ones
// that are used on purpose, such as æ and œ, stay.
var ligatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn",
	'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// widthForm maps the Halfwidth and Fullwidth Forms block (and the
// ideographic space) to ordinary characters, using NFKC for that block only:
// full NFKC would also rewrite things like "10³" into "103".
func widthForm(r rune) (string, bool) {
	if r == '\u3000' {
		return " ", true
	}
	if r < 0xFF01 || r > 0xFFEF {
		return "", false
	}
	s := string(r)
	n := norm.NFKC.String(s)
	return n, n != s
}

func uncurl(r rune) rune {
	switch {
	case r == '\u02BC' || '\u2018' <= r && r <= '\u201B':
		return '\''
	case '\u201C' <= r && r <= '\u201F':
		return '"'
	}
	return r
}

func fixLineBreaks(s string) string {
	if !strings.ContainsAny(s, "\r\u2028\u2029\u0085") {
		return s
	}
	return lineBreaks.Replace(s)
}

var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n")

// removeTerminalEscapes drops ANSI colour codes: ESC '[' then digits and
// semicolons then one ASCII letter. Python's \d there is any decimal digit.
func removeTerminalEscapes(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			break
		}
		j := i + 2
		for j < len(s) {
			r, size := utf8.DecodeRuneInString(s[j:])
			if r != ';' && !unicode.IsDigit(r) {
				break
			}
			j += size
		}
		if j < len(s) && ('a' <= s[j] && s[j] <= 'z' || 'A' <= s[j] && s[j] <= 'Z') {
			b.WriteString(s[:i])
			s = s[j+1:]
			continue
		}
		b.WriteString(s[:i+1])
		s = s[i+1:]
	}
	b.WriteString(s)
	return b.String()
}

// removeControlChars drops control characters that have no visible effect:
// C0 controls except tab, newline, form feed and carriage return, DEL, the
// deprecated Arabic format controls, the byte order mark and the interlinear
// annotation characters. C1 controls were already mapped.
func removeControlChars(s string) string {
	if strings.IndexFunc(s, isDroppedControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isDroppedControl(r) {
			return -1
		}
		return r
	}, s)
}

func isDroppedControl(r rune) bool {
	switch {
	case r < 0x20:
		return r != '\t' && r != '\n' && r != '\f' && r != '\r'
	case r == 0x7F, r == 0xFEFF:
		return true
	case 0x206A <= r && r <= 0x206F, 0xFFF9 <= r && r <= 0xFFFC:
		return true
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
