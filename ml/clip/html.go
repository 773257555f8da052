package clip

import (
	"html"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// pyUnescape behaves like Python's html.unescape.
//
// Go's html.UnescapeString resolves named references as Python does (same
// WHATWG table, same longest-prefix rule for the legacy names written without
// a semicolon), but it cannot be run on whole strings: numeric references
// differ (Python drops code points that HTML forbids, so &#1; gives "";
// Go turns "&#x;" into U+FFFD and wraps &#4294967361; round to "A"), and its
// table lacks &nGt; and &nLt;. So this scans for references itself, decodes
// numeric ones here, and hands Go only one named reference at a time, cut
// where Python's pattern cuts it.
func pyUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i:]
		var repl string
		var n int
		if len(s) > 1 && s[1] == '#' {
			repl, n = numericRef(s)
		} else {
			repl, n = namedRef(s)
		}
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
			continue
		}
		b.WriteString(repl)
		s = s[n:]
	}
}

// namedRef decodes the named reference at the start of s. Python's pattern
// takes up to 32 characters other than tab, newline, form feed, space, '<',
// '&', '#' and ';', then an optional ';'.
func namedRef(s string) (repl string, n int) {
	i, count := 1, 0
	for i < len(s) && count < 32 {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
			break
		}
		i += size
		count++
	}
	if count == 0 {
		return "", 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	ref := s[:i]
	if v, ok := goMissing[ref]; ok {
		return v, i
	}
	return html.UnescapeString(ref), i
}

// goMissing holds the HTML5 entities that Python knows and Go's html
// package does not.
var goMissing = map[string]string{
	"&nGt;": "\u226B\u20D2",
	"&nLt;": "\u226A\u20D2",
}

// numericRef decodes a reference "&#123;" or "&#x7B;" (the semicolon is
// optional) at the start of s, following Python's html module. It returns the
// replacement and the length consumed, or n == 0 when s does not start with
// one.
func numericRef(s string) (repl string, n int) {
	i := 2
	base := 10
	if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
		base = 16
		i++
	}
	start := i
	num := 0
	big := false // past 0x10FFFF: the exact value no longer matters
	for i < len(s) {
		d := digitVal(s[i], base)
		if d < 0 {
			break
		}
		if !big {
			num = num*base + d
			big = num > 0x10FFFF
		}
		i++
	}
	if i == start {
		return "", 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	if big {
		return "\uFFFD", i
	}
	return charRef(num), i
}

func digitVal(c byte, base int) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case base == 16 && 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case base == 16 && 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// charRef maps a numeric reference to text as Python's html.unescape does.
func charRef(num int) string {
	switch {
	case num == 0:
		return "\uFFFD"
	case num == 0x0D:
		return "\r"
	case 0x80 <= num && num <= 0x9F:
		// HTML reads these as Windows-1252; its five holes stay C1 controls.
		return string(cp1252[num-0x80])
	case 0xD800 <= num && num <= 0xDFFF || num > 0x10FFFF:
		return "\uFFFD"
	case forbiddenCodePoint(num):
		return ""
	}
	return string(rune(num))
}

// forbiddenCodePoint is Python html's _invalid_codepoints, minus the C1 range
// that charRef handles first.
func forbiddenCodePoint(n int) bool {
	return 0x01 <= n && n <= 0x08 || n == 0x0B || 0x0E <= n && n <= 0x1F || n == 0x7F ||
		0xFDD0 <= n && n <= 0xFDEF || n&0xFFFE == 0xFFFE
}

// upperCaser gives Python's str.upper (full case mapping: ß → SS).
var upperCaser = cases.Upper(language.Und)

// ftfyUnescape is ftfy's unescape_html: it decodes only references of the
// form &name; or &#num; (1 to 24 ASCII letters or digits and a semicolon),
// never the semicolon-less legacy forms, so that informal text such as
// "this&not that" survives. It also accepts the ALL-CAPS spelling of an
// all-lowercase entity name (&EACUTE; → É) when that spelling means nothing
// in HTML itself, as databases that upper-case text produce those.
func ftfyUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '#' {
			j++
		}
		k := j
		for k < len(s) && k-j < 24 && isASCIIAlnum(s[k]) {
			k++
		}
		if k == j || k >= len(s) || s[k] != ';' {
			continue
		}
		ref := s[i : k+1]
		b.WriteString(s[last:i])
		b.WriteString(ftfyEntity(ref))
		last = k + 1
		i = k
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func ftfyEntity(ref string) string {
	if ref[1] == '#' {
		// Numeric: keep it unless Python decodes it completely.
		if u := pyUnescape(ref); !strings.Contains(u, ";") {
			return u
		}
		return ref
	}
	if v, ok := exactEntity(ref); ok {
		return v
	}
	name := ref[1 : len(ref)-1]
	lower := strings.ToLower(name)
	if name == lower {
		return ref
	}
	if strings.ToUpper(lower) != name {
		return ref // mixed case, as in &nTILDE;
	}
	v, ok := exactEntity("&" + lower + ";")
	if !ok || pyUnescape(ref) != ref {
		return ref
	}
	return upperCaser.String(v)
}

// exactEntity resolves "&name;" only when the whole name (with its
// semicolon) is an HTML5 entity, not by a legacy prefix. Go's table is not
// exported, so this asks html.UnescapeString and tells the two apart by
// length: an entity's value is one or two runes, while a prefix match keeps
// at least one name character and the semicolon after its value.
func exactEntity(ref string) (string, bool) {
	if v, ok := goMissing[ref]; ok {
		return v, true
	}
	u := html.UnescapeString(ref)
	if u == ref || utf8.RuneCountInString(u) > 2 {
		return "", false
	}
	return u, true
}

func isASCIIAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
