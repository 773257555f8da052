package data

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/training/textclip"
)

// With default options a synthfaces dataset is prepared the way the
// shipped tiny model was: CLIP's tokenizer even without ../shared beside
// the repository (it ships with face0), and face embeddings in
// synthfaces-id-64, the space EmbedFace gives at sampling time, not the
// metadata's synthfaces-attr-64 attribute codes, which nothing gives.
func TestDefaultsMatchTheShippedModel(t *testing.T) {
	orttest.Require(t)
	t.Setenv("FACE0_SHARED", filepath.Join(t.TempDir(), "no-shared-here"))
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 2, Train: 3, HeldOut: -1, PerIdentity: 2, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	var logs []string
	p, err := Prepare(context.Background(), dir, filepath.Join(t.TempDir(), "prep"), Options{Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Info.Vocab != "clip" {
		t.Errorf("vocabulary %q without ../shared, want CLIP's (shipped)", p.Info.Vocab)
	}
	if p.Info.Space != synthfaces.IDSpace || p.Info.FaceSource != FaceSynthfaces {
		t.Errorf("auto face source on a synthfaces dataset: %s in %s, want %s in %s", p.Info.FaceSource, p.Info.Space, FaceSynthfaces, synthfaces.IDSpace)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "face embeddings: synthfaces-id") {
		t.Errorf("the chosen face source is not logged: %q", logs)
	}
	enc, err := sdmodel.Load(p.EncoderPath())
	if err != nil {
		t.Fatal(err)
	}
	if enc.Manifest.PadToken != 49407 {
		t.Errorf("the encoder's vocabulary ends at %d, CLIP's at 49407", enc.Manifest.PadToken)
	}
	if _, err := os.Stat(filepath.Join(p.EncoderPath(), "tokenizer", "LICENSE-CLIP.txt")); err != nil {
		t.Errorf("CLIP's licence does not travel with its vocabulary: %v", err)
	}
}

// auto keeps a dataset's own precomputed embeddings (another space than
// synthfaces' attribute codes) and detects faces when there are none.
func TestAutoFaceSource(t *testing.T) {
	emb := func(string) []float32 { return []float32{1, 0} }
	for _, c := range []struct {
		items []Item
		want  string
	}{
		{[]Item{{Embedding: emb(""), Space: synthfaces.EmbeddingSpace}}, FaceSynthfaces},
		{[]Item{{}, {Embedding: emb(""), Space: "facenet"}}, FacePrecomputed},
		{[]Item{{}, {}}, FaceDetect},
	} {
		if got, why := autoFace(&Listing{Items: c.items}); got != c.want || why == "" {
			t.Errorf("%+v: %s (%q), want %s", c.items, got, why, c.want)
		}
	}
}

func TestFitTextBatch(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{4000, 128}, {1600, 128}, {1275, 128}, {1274, 64}, {700, 64}, {634, 32}, {160, 16}, {120, 8}, {75, 8},
	} {
		b := FitTextBatch(c.n, 0)
		if b != c.want {
			t.Errorf("%d pairs: batch %d, want %d", c.n, b, c.want)
		}
		// textclip accepts what it is given.
		held := int(float64(c.n)*0.1+0.5) / b * b
		if held < b || c.n-held < b {
			t.Errorf("%d pairs, batch %d: %d held out is not a batch", c.n, b, held)
		}
	}
	if m := MinTextPairs(0); m != 75 {
		t.Errorf("MinTextPairs = %d, want 75", m)
	}
}

// Text pretraining with its default batch fits a small dataset instead of
// failing ("too few for a batch of 128"), and a dataset too small for any
// batch is trained without it, with a warning, not refused.
func TestTextPretrainDefaultBatchFits(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 3, Train: 20, HeldOut: -1, PerIdentity: 4, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(context.Background(), dir, filepath.Join(t.TempDir(), "prep"), Options{Vocab: VocabTiny, TextPretrain: textclip.Options{Steps: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if tp := p.Info.TextPretrain; tp == nil || tp.Batch != 8 || tp.Pairs != 80 {
		t.Fatalf("80 pairs: text pretraining %+v, want batch 8", tp)
	}

	small := t.TempDir()
	if _, err := synthfaces.Generate(small, synthfaces.Options{Seed: 3, Train: 4, HeldOut: -1, PerIdentity: 2, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	var logs []string
	p, err = Prepare(context.Background(), small, filepath.Join(t.TempDir(), "prep"), Options{Vocab: VocabTiny, TextPretrain: textclip.Options{Steps: 2},
		Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatalf("8 pairs: %v", err)
	}
	b, _ := json.Marshal(p.Info.TextPretrain)
	if p.Info.TextPretrain != nil || !strings.Contains(strings.Join(logs, "\n"), "WARNING: text encoder pretraining skipped") {
		t.Fatalf("8 pairs: text pretraining %s, logs %q; want it skipped with a warning", b, logs)
	}
}
