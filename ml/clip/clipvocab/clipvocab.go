// Package clipvocab ships CLIP's BPE vocabulary inside the binary, so that a
// model trained from scratch tokenises its captions with the real CLIP
// tokenizer on any machine, not only where ../shared/clip is beside the
// repository.
//
// bpe_merges_48894.txt.gz holds the header line and the first 48,894 merge
// lines of openai/CLIP's bpe_simple_vocab_16e6.txt.gz, the only ones the
// tokenizer reads (the rest of that 1.3 MB file is unused), gzipped: 208 KB.
// With them ml/clip.LoadBPE and ml/sdmodel build exactly CLIP's 49,408-token
// vocabulary (the test checks it against the reference tokenizer's ids). It
// is the same list as every CLIP tokenizer/merges.txt, the shipped tiny
// model's included. Licence: MIT, LICENSE-CLIP.txt beside it.
package clipvocab

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the name Write gives the vocabulary file.
const FileName = "bpe_merges_48894.txt.gz"

// GZ is the gzipped merges file (ml/clip.LoadBPE's format).
//
//go:embed bpe_merges_48894.txt.gz
var GZ []byte

// License is openai/CLIP's MIT licence, which covers GZ; keep it next to
// copies of the vocabulary.
//
//go:embed LICENSE-CLIP.txt
var License []byte

// Write writes the vocabulary (and its licence) into dir and returns the
// vocabulary file's path, for code that takes a path (ml/sdmodel's
// Config.BPEPath, ml/clip.LoadBPE).
func Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("clipvocab: %w", err)
	}
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p, GZ, 0o644); err != nil {
		return "", fmt.Errorf("clipvocab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "LICENSE-CLIP.txt"), License, 0o644); err != nil {
		return "", fmt.Errorf("clipvocab: %w", err)
	}
	return p, nil
}
