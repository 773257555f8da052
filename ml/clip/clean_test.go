package clip

import (
	"slices"
	"testing"
)

// The expected values below were produced by the reference pipeline
// (ftfy 6.3.1 fix_text, html.unescape twice, whitespace clean-up, lower()).
func TestClean(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "A Photo  of a CAT", "a photo of a cat"},
		{"mojibake latin-1", "cafÃ© au lait", "café au lait"},
		{"mojibake cp1252 quote", "itâ€™s", "it's"},
		{"double mojibake", "cafÃƒÂ©", "café"},
		{"embedded mojibake next to emoji", "cafÃ© 🙂", "café 🙂"},
		{"mojibake per line", "naïve\ncafÃ©", "naïve café"},
		{"byte order mark mojibake", "ï»¿hello", "hello"},
		{"C1 control read as cp1252", "it\u0092s", "it's"},
		{"legit accents kept", "Crème brûlée à la française", "crème brûlée à la française"},
		{"accented capital before closing quote kept", "“CAFÉ”", "\"café\""},
		{"German quotes kept", "„Straße“", "\"straße\""},
		{"capital before dash kept", "ÉCOLE–PARIS", "école–paris"},
		{"trade mark kept", "Pokémon™ cards", "pokémon™ cards"},
		{"Portuguese capitals kept", "SÃO PAULO", "são paulo"},
		{"apostrophe after Ñ kept", "AÑO’S", "año's"},
		{"nfc", "e\u0301cole", "école"},
		{"ligatures", "ﬁne ﬂour ﬃ", "fine flour ffi"},
		{"fullwidth", "ＦＵＬＬ\u3000ｗｉｄｔｈ！", "full width!"},
		{"halfwidth katakana", "ｶﾀｶﾅ", "カタカナ"},
		{"curly quotes", "‘one’ “two”", "'one' \"two\""},
		{"control chars dropped", "a\x00b\x07c\x7fd\ufeffe", "abcde"},
		{"CR and line separators", "a\r\nb\rc\u2028d", "a b c d"},
		{"terminal escapes", "\x1b[31mred\x1b[0m", "red"},
		{"entities", "salt &amp; pepper &lt;3", "salt & pepper <3"},
		{"entity without semicolon", "fish &amp chips", "fish & chips"},
		{"triple-escaped entity", "&amp;amp;amp;", "&"},
		{"triple-escaped with < stays partly escaped", "<b> &amp;amp;amp;", "<b> &amp;"},
		{"upper-case entity", "P&EACUTE;REZ", "pérez"},
		{"numeric entities", "&#39;&#x2019;&#128;", "''€"},
		{"forbidden numeric entity dropped", "a&#1;b&#xFFFF;c", "abc"},
		{"huge numeric entity", "&#99999999999;", "\uFFFD"},
		{"unicode whitespace", "a\u00a0b\u2003c\u3000d\te", "a b c d e"},
		{"zero-width space is not whitespace", "a\u200bb", "a\u200bb"},
		{"dotted capital I", "İstanbul", "i\u0307stanbul"},
		{"final sigma", "ΟΔΟΣ ΣΟΦΙΑΣ.", "οδος σοφιας."},
		{"sigma alone", "Σ", "σ"},
		{"sigma before apostrophe and letter", "ΑΣ'Α", "ασ'α"},
		{"sigma before apostrophe at end", "ΑΣ'", "ας'"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := clean(tc.in); got != tc.want {
				t.Errorf("clean(%+q) = %+q, want %+q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSplitPieces(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"it's we'll they're i'm he'd", []string{"it", "'s", "we", "'ll", "they", "'re", "i", "'m", "he", "'d"}},
		{"'sam", []string{"'s", "am"}},
		{"don't!!", []string{"don", "'t", "!!"}},
		{"pi 3.14", []string{"pi", "3", ".", "1", "4"}},
		{"<|startoftext|>a<|endoftext|>", []string{"<|startoftext|>", "a", "<|endoftext|>"}},
		{"!!<|endoftext|>", []string{"!!<|", "endoftext", "|>"}},
		{"'ſ", []string{"'ſ"}},           // IGNORECASE: ſ folds to s
		{"a\u0345b", []string{"a", "b"}}, // U+0345 matches nothing
		{"猫🙂x", []string{"猫", "🙂", "x"}},
		{"a\u200bb", []string{"a", "\u200b", "b"}},
	}
	for _, tc := range tests {
		var got []string
		splitPieces(tc.in, func(p string) bool { got = append(got, p); return true })
		if !slices.Equal(got, tc.want) {
			t.Errorf("splitPieces(%+q) = %+q, want %+q", tc.in, got, tc.want)
		}
	}
}
