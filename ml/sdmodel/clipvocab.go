package sdmodel

import (
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/clip/clipvocab"
)

// WriteCLIPTokenizer writes CLIP ViT-L/14's tokenizer, the one every SD
// 1.x model uses, into dir/tokenizer/ in Hugging Face's layout
// (vocab.json with 49,408 ids, merges.txt), and returns its end token
// (<|endoftext|>, 49407), which SD pads prompts with. Every SD 1.x model
// uses this tokenizer and a single-file checkpoint does not carry it, so an
// import writes it from the vocabulary the binary ships (ml/clip/clipvocab),
// with CLIP's MIT licence beside it.
func WriteCLIPTokenizer(dir string) (endToken int, err error) {
	v, err := parseCLIPVocabulary("the embedded CLIP vocabulary", clipvocab.GZ)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tokenizer"), 0o755); err != nil {
		return 0, err
	}
	if err := v.write(filepath.Join(dir, VocabFile), filepath.Join(dir, MergesFile)); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer", "LICENSE-CLIP.txt"), clipvocab.License, 0o644); err != nil {
		return 0, err
	}
	return len(v.tokens) - 1, nil
}
