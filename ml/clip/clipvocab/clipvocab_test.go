package clipvocab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/clip"
)

// The shipped vocabulary builds CLIP's tokenizer: 48,894 merges after the
// header, and (when ../shared has the reference data) the reference
// tokenizer's ids for every golden prompt.
func TestShippedVocabularyIsCLIPs(t *testing.T) {
	zr, err := gzip.NewReader(bytes.NewReader(GZ))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	lines := 0
	for sc.Scan() {
		lines++
	}
	if sc.Err() != nil || lines != 1+48894 {
		t.Fatalf("%s has %d lines (%v), want a header and 48,894 merges", FileName, lines, sc.Err())
	}
	p, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := clip.LoadBPE(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a photo portrait of a smiling person"); len(got) != 7 {
		t.Errorf("CLIP encodes a plain caption word by word; got %v", got)
	}
	shared, err := assets.SharedDir()
	if err != nil {
		t.Skipf("checked the format only: %v (the golden ids live in ../shared/clip)", err)
	}
	raw, err := os.ReadFile(shared + "/clip/golden_tokens.json")
	if err != nil {
		t.Skipf("checked the format only: %v", err)
	}
	var cases []struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil || len(cases) == 0 {
		t.Fatalf("golden_tokens.json: %v", err)
	}
	for _, c := range cases {
		got := append([]int{49406}, append(tok.Encode(c.Text), 49407)...)
		if !slices.Equal(got, c.IDs) {
			t.Errorf("%q: ids %v, the reference tokenizer's %v", c.Text, got, c.IDs)
		}
	}
}
