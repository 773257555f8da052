package sdmodel

import (
	_ "embed"
	"os"
	"path/filepath"
)

// clipBPE is openai/CLIP's vocabulary file bpe_simple_vocab_16e6.txt.gz,
// byte for byte (sha256 924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a;
// MIT licence in clipvocab/LICENSE-CLIP.txt). Every SD 1.x model uses this
// tokenizer, and a single-file checkpoint does not carry it, so an import
// writes it from here.
//
//go:embed clipvocab/bpe_simple_vocab_16e6.txt.gz
var clipBPE []byte

// WriteCLIPTokenizer writes CLIP ViT-L/14's tokenizer, the one every SD
// 1.x model uses, into dir/tokenizer/ in Hugging Face's layout
// (vocab.json with 49,408 ids, merges.txt), and returns its end token
// (<|endoftext|>, 49407), which SD pads prompts with.
func WriteCLIPTokenizer(dir string) (endToken int, err error) {
	v, err := parseCLIPVocabulary("the embedded CLIP vocabulary", clipBPE)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tokenizer"), 0o755); err != nil {
		return 0, err
	}
	if err := v.write(filepath.Join(dir, VocabFile), filepath.Join(dir, MergesFile)); err != nil {
		return 0, err
	}
	return len(v.tokens) - 1, nil
}
