package data

import (
	"fmt"
	"os"
	"runtime"

	"github.com/face0/face0/ml/clip/clipvocab"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/textclip"
)

// Face embedding sources.
const (
	FacePrecomputed = "precomputed" // a metadata field (synthfaces' identity_embedding)
	FaceDetect      = "detect"      // face-api: largest face, Face0 crop, 128-d descriptor
	// FaceAuto picks a source whose space an EmbedFace model gives at
	// sampling time: synthfaces-id for a synthfaces dataset (whose metadata
	// holds attribute codes), precomputed for other metadata embeddings,
	// else detect.
	FaceAuto = "auto"
	// FaceSynthfaces embeds each whole image with synthfaces.Embed (space
	// synthfaces-id-64), as the face pack's EmbedFace does with model
	// synthfaces-id-64: the embedder of the shipped tiny model.
	FaceSynthfaces = "synthfaces-id"
)

// What to do with an image without a face (or without a precomputed
// embedding).
const (
	NoFaceZero = "zero" // keep it; its face tokens are always zeroed (a no-face example)
	NoFaceSkip = "skip" // leave it out (reported as a problem)
)

// Vocabulary choices for the frozen text encoder's tokenizer.
const (
	VocabAuto = "auto" // CLIP's BPE vocabulary, shipped in the binary (ml/clip/clipvocab)
	VocabTiny = "tiny" // ml/sdmodel's small byte-level vocabulary
)

// Options configure Prepare. Zero fields take the defaults in brackets.
type Options struct {
	Latent Latent // [DefaultLatent: 32 px, factor 4]
	Face   string // FaceAuto, FacePrecomputed, FaceDetect or FaceSynthfaces [auto: see autoFace]
	NoFace string // NoFaceZero or NoFaceSkip [zero]
	Scan   ScanOptions
	// FaceAPIDir is face-api's model/ folder for the detect mode ["":
	// FaceAPIModelDir(“”, Models)]; Models is a models folder to look in.
	FaceAPIDir, Models string

	// TextEncoder sizes the frozen, seeded-random text encoder (ml/sdmodel's
	// generated CLIP-like one; only its text fields and Seed matter)
	// [sdmodel.TinyConfig()].
	TextEncoder sdmodel.Config
	// Vocab is VocabAuto, VocabTiny, or the path of
	// bpe_simple_vocab_16e6.txt.gz [auto].
	Vocab string
	// TextPretrain, when its Steps is set, pretrains the text encoder on the
	// dataset's caption–image pairs (training/textclip: CLIP's contrastive
	// objective) before it encodes the captions, in place of keeping its
	// random weights. The encoder is frozen in training either way; this is
	// the from-scratch stand-in for SD's pretrained CLIP. Its Progress is
	// called as it trains.
	TextPretrain textclip.Options
	// Base, when set, is the Stable Diffusion model being fine-tuned: its
	// frozen VAE encodes the images (Latent must be BaseLatent(size), size a
	// multiple of the VAE's downscale) and its frozen CLIP text encoder and
	// tokenizer encode the captions, in place of the space-to-depth latent
	// and the generated encoder.
	Base *base.Model

	Workers int // [GOMAXPROCS]
	// Progress is called as images are encoded (done of total), Logf with
	// notes (skipped files, truncated captions); both may be nil.
	Progress func(done, total int)
	Logf     func(format string, args ...any)
}

func (o Options) norm() Options {
	if o.Latent == (Latent{}) {
		o.Latent = DefaultLatent()
	}
	if o.Face == "" {
		o.Face = FaceAuto
	}
	if o.NoFace == "" {
		o.NoFace = NoFaceZero
	}
	if o.TextEncoder.TextWidth == 0 {
		t := sdmodel.TinyConfig()
		t.Seed = o.TextEncoder.Seed
		if t.Seed == 0 {
			t.Seed = 1
		}
		o.TextEncoder = t
	}
	o.TextEncoder.Name = "frozen-text-encoder"
	if o.Vocab == "" {
		o.Vocab = VocabAuto
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Progress == nil {
		o.Progress = func(int, int) {}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// autoFace picks the face source for FaceAuto: one whose embeddings an
// EmbedFace model reproduces from an image at sampling time, or the trained
// model could not be driven by a face. A synthfaces dataset's metadata
// carries attribute codes (synthfaces-attr-64), which no image embedder
// gives, so its images are embedded with the synthfaces identity embedder
// (EmbedFace's synthfaces-id-64, the shipped tiny model's); other
// precomputed embeddings are the user's own, in their own space; without
// any, faces are detected and described with face-api.
func autoFace(l *Listing) (source, why string) {
	for _, it := range l.Items {
		if it.Embedding == nil {
			continue
		}
		if it.Space == synthfaces.EmbeddingSpace {
			return FaceSynthfaces, fmt.Sprintf("the metadata's %s embeddings are synthfaces attribute codes, which no EmbedFace model gives; the identity embedder's %s is what EmbedFace gives at sampling time", synthfaces.EmbeddingSpace, synthfaces.IDSpace)
		}
		return FacePrecomputed, fmt.Sprintf("the metadata's %q embeddings", it.Space)
	}
	return FaceDetect, "no precomputed embeddings: face-api finds and describes each image's largest face"
}

// vocabData resolves the Vocab option to the bytes of a BPE vocabulary file
// (nil: the tiny one). auto is CLIP's, which ships inside the binary: a
// model trained from scratch tokenises like the shipped one on any machine,
// with or without ../shared beside the repository.
func vocabData(v string) ([]byte, error) {
	switch v {
	case VocabTiny:
		return nil, nil
	case VocabAuto:
		return clipvocab.GZ, nil
	}
	if !fileExists(v) {
		return nil, fmt.Errorf("data: vocabulary %s not found (use auto for CLIP's, which face0 ships, or tiny)", v)
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return b, nil
}
