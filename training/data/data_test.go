package data

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/training/textclip"
)

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

func TestLatentRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, l := range []Latent{{32, 4}, {32, 2}, {16, 1}} {
		img := image.NewNRGBA(image.Rect(0, 0, l.Size, l.Size))
		for i := range img.Pix {
			img.Pix[i] = uint8(r.IntN(256))
			if i%4 == 3 {
				img.Pix[i] = 255
			}
		}
		lat := l.Encode(img)
		if len(lat) != l.Len() || l.Channels() != 3*l.Factor*l.Factor {
			t.Fatalf("%+v: %d values", l, len(lat))
		}
		back := l.Decode(lat)
		for i := range img.Pix {
			if back.Pix[i] != img.Pix[i] {
				t.Fatalf("%+v: byte %d is %d after the round trip, want %d", l, i, back.Pix[i], img.Pix[i])
			}
		}
		// Channels 0..2 are the top-left pixel of each block.
		s := l.Side()
		if got, want := lat[0*s*s+1], float32(img.Pix[l.Factor*4+0])/127.5-1; got != want {
			t.Errorf("%+v: channel 0 at (0,1) = %g, want pixel (0,%d) red %g", l, got, l.Factor, want)
		}
	}
	// Non-square and larger images are centre-cropped and resized.
	wide := image.NewNRGBA(image.Rect(0, 0, 96, 64))
	for i := range wide.Pix {
		wide.Pix[i] = 200
	}
	if got := DefaultLatent().Fit(wide).Bounds(); got.Dx() != 32 || got.Dy() != 32 {
		t.Errorf("fit: %v", got)
	}
}

func TestDecoderIsInverse(t *testing.T) {
	orttest.Require(t)
	l := DefaultLatent()
	g, err := l.Decoder()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dec.onnx")
	if err := g.Save(p); err != nil {
		t.Fatal(err)
	}
	s, err := ort.Load(p, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(3, 4))
	imgs := make([]*image.NRGBA, 2)
	var lat []float32
	for b := range imgs {
		imgs[b] = image.NewNRGBA(image.Rect(0, 0, 32, 32))
		for i := range imgs[b].Pix {
			imgs[b].Pix[i] = uint8(r.IntN(256)) | uint8(255*(i%4/3)) // opaque
		}
		lat = append(lat, l.Encode(imgs[b])...)
	}
	out, err := s.Run(map[string]ort.Tensor{"latent_sample": ort.F32(lat, 2, 48, 8, 8)})
	if err != nil {
		t.Fatal(err)
	}
	y := out["sample"]
	if len(y.Shape) != 4 || y.Shape[0] != 2 || y.Shape[1] != 3 || y.Shape[2] != 32 || y.Shape[3] != 32 {
		t.Fatalf("shape %v", y.Shape)
	}
	v := y.Float32()
	for b, img := range imgs {
		for c := range 3 {
			for i := range 32 * 32 {
				want := float32(img.Pix[i*4+c])/127.5 - 1
				if got := v[b*3*1024+c*1024+i]; got != want {
					t.Fatalf("sample %d channel %d pixel %d: %g, want %g", b, c, i, got, want)
				}
			}
		}
	}
}

// A sidecar-caption folder with every kind of bad file: they are reported
// and skipped, and the rest is encoded; a second Prepare reuses the cache.
func TestPrepareSidecarsAndProblems(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	img := image.NewNRGBA(image.Rect(0, 0, 40, 40))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	writePNG(t, filepath.Join(dir, "a.png"), img)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a photo of a red cat\n"), 0o644)
	writePNG(t, filepath.Join(dir, "sub_b.png"), img)
	os.WriteFile(filepath.Join(dir, "sub_b.txt"), []byte("a blue dog"), 0o644)
	writePNG(t, filepath.Join(dir, "nocaption.png"), img)
	os.WriteFile(filepath.Join(dir, "broken.png"), []byte("\x89PNG nope"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.txt"), []byte("broken"), 0o644)
	os.WriteFile(filepath.Join(dir, "empty.jpg"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "empty.txt"), []byte("empty"), 0o644)

	// Precomputed mode with no embeddings: every image is a no-face example.
	var logs []string
	cache := filepath.Join(t.TempDir(), "prep")
	o := Options{Face: FacePrecomputed, Logf: func(f string, a ...any) { logs = append(logs, f) }}
	_, err := Prepare(context.Background(), dir, cache, o)
	if err == nil || !strings.Contains(err.Error(), "no image") {
		t.Fatalf("no embeddings at all: %v", err)
	}
	// Sidecar metadata with embeddings as a bare array, space from dataset.json.
	os.WriteFile(filepath.Join(dir, DatasetFile), []byte(`{"embedding_space": "test-3"}`), 0o644)
	os.WriteFile(filepath.Join(dir, MetadataFile), []byte(
		`{"file": "a.png", "embedding": [1, 0, 0]}`+"\n"+ // caption from a.txt
			`{"file_name": "sub_b.png", "text": "a green dog"}`+"\n"+ // no embedding: no face
			`{"file": "nocaption.png", "embedding": [0, 1, 0]}`+"\n"+
			`{"file": "broken.png", "embedding": [0, 0, 1]}`+"\n"+
			`{"file": "../escape.png", "caption": "x"}`+"\n"+
			`{"file": "a.png", "caption": "twice"}`+"\n"+
			`{"file": "empty.jpg", "embedding": [0, 1, 1]}`+"\n"+
			`{"file": "missing.png", "caption": "x"}`+"\n"+
			`not json`+"\n"), 0o644)
	start := time.Now()
	p, err := Prepare(context.Background(), dir, cache, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prepared %d of 9 records in %v", p.Len(), time.Since(start))
	if p.Len() != 2 || p.Info.NoFace != 1 || p.Info.Space != "test-3" || p.Info.Dim != 3 {
		t.Fatalf("info %+v", p.Info)
	}
	want := []string{"nocaption.png", "broken.png", "escape.png", "listed twice", "empty.jpg", "missing.png", "line 9"}
	all := ""
	for _, pr := range p.Info.Problems {
		all += pr.String() + "\n"
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("problems do not mention %q:\n%s", w, all)
		}
	}
	ex, _ := p.Example(1)
	if !ex.NoFace || len(ex.Context) != 77*32 || len(ex.Latent) != 48*64 {
		t.Errorf("example 1: noface %v, %d context, %d latent values", ex.NoFace, len(ex.Context), len(ex.Latent))
	}
	// Unchanged folder: the cache is reused.
	logs = nil
	p2, err := Prepare(context.Background(), dir, cache, o)
	if err != nil || p2.Len() != 2 || len(logs) != 1 || !strings.Contains(logs[0], "reused") {
		t.Fatalf("second prepare: %v, logs %q", err, logs)
	}
	// The empty prompt's context is stored and read back, and differs from
	// a caption's.
	if e, e2 := p.EmptyContext(), p2.EmptyContext(); len(e) != 77*32 || !slices.Equal(e, e2) || slices.Equal(e, ex.Context) {
		t.Errorf("empty-prompt context: %d values, reloaded equal %v, equal to a caption's %v", len(e), slices.Equal(e, e2), slices.Equal(e, ex.Context))
	}
	// Skip no-face images instead.
	o.NoFace = NoFaceSkip
	p3, err := Prepare(context.Background(), dir, cache, o)
	if err != nil || p3.Len() != 1 {
		t.Fatalf("no_face=skip: %v", err)
	}
}

// The vocabularies: the tiny one, auto (CLIP's, shipped) and CLIP's file
// from ../shared when it is there; the tiny one cuts long synthfaces
// captions, CLIP's does not.
func TestVocabularies(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 2, Train: 4, HeldOut: -1, PerIdentity: 4, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	vocabs := []string{VocabTiny, VocabAuto}
	if d, err := assets.SharedDir(); err == nil {
		vocabs = append(vocabs, filepath.Join(d, "clip", "bpe_simple_vocab_16e6.txt.gz"))
	}
	for _, v := range vocabs {
		p, err := Prepare(context.Background(), dir, filepath.Join(t.TempDir(), "prep"), Options{Vocab: v})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		t.Logf("vocabulary %s: %d examples, %d captions cut, %.1f ms/image", p.Info.Vocab, p.Len(), p.Info.Truncate, 1000*p.Info.Seconds/float64(p.Len()))
		if p.Len() != 16 || p.Info.Space != synthfaces.IDSpace {
			t.Errorf("%s: %+v", v, p.Info)
		}
		if p.Info.Vocab == "clip" && p.Info.Truncate != 0 {
			t.Errorf("CLIP's vocabulary cut %d synthfaces captions", p.Info.Truncate)
		}
	}
}

// The detect mode finds the synthfaces faces at 128 px with face-api and
// keeps a faceless image with zeroed face tokens.
func TestDetectMode(t *testing.T) {
	orttest.Require(t)
	md, err := FaceAPIModelDir("", "")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 1, Train: 2, HeldOut: -1, PerIdentity: 1, Size: 128, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	train := filepath.Join(dir, "train")
	os.Remove(filepath.Join(train, MetadataFile)) // sidecar captions only: nothing precomputed
	blank := image.NewNRGBA(image.Rect(0, 0, 128, 128))
	for i := range blank.Pix {
		blank.Pix[i] = 128
	}
	blank.Set(0, 0, color.Black)
	writePNG(t, filepath.Join(train, "blank.png"), blank)
	os.WriteFile(filepath.Join(train, "blank.txt"), []byte("a gray wall"), 0o644)
	start := time.Now()
	p, err := Prepare(context.Background(), dir, filepath.Join(t.TempDir(), "prep"), Options{FaceAPIDir: md, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	per := time.Since(start) / time.Duration(p.Len())
	t.Logf("detect mode: %d examples, %d without a face, %v per image", p.Len(), p.Info.NoFace, per)
	if p.Info.FaceSource != FaceDetect || p.Info.Space != FaceAPISpace || p.Info.Dim != FaceAPIDim || p.Len() != 3 {
		t.Fatalf("info %+v", p.Info)
	}
	if p.Info.NoFace < 1 || p.Info.NoFace > 2 {
		t.Errorf("%d images without a face; want the blank one (and at most one missed face)", p.Info.NoFace)
	}
	for i, f := range p.Info.Files {
		ex, _ := p.Example(i)
		if f == "blank.png" && !ex.NoFace {
			t.Error("a face was found on the blank image")
		}
	}
	if _, err := os.Stat(p.MixturePath()); err != nil {
		t.Error(err)
	}
}

// TestSynthfacesMode: the synthfaces-id face source embeds every image with
// synthfaces.Embed (what EmbedFace's synthfaces-id-64 model computes), even
// where the metadata carries precomputed vectors of another space.
func TestSynthfacesMode(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 1, Train: 3, HeldOut: -1, PerIdentity: 2, Size: 64, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(context.Background(), dir, filepath.Join(t.TempDir(), "prep"), Options{Face: FaceSynthfaces, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Info.FaceSource != FaceSynthfaces || p.Info.Space != synthfaces.IDSpace || p.Info.Dim != synthfaces.EmbeddingDim || p.Len() != 6 || p.Info.NoFace != 0 {
		t.Fatalf("info %+v", p.Info)
	}
	for i, f := range p.Info.Files {
		fh, err := os.Open(filepath.Join(dir, "train", f))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := image.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		ex, _ := p.Example(i)
		want := synthfaces.Embed(img).Vector
		for k := range want {
			if ex.Embedding[k] != want[k] {
				t.Fatalf("%s: embedding[%d] = %g, want synthfaces.Embed's %g", f, k, ex.Embedding[k], want[k])
			}
		}
	}
}

// TestTextPretrain: with TextPretrain the encoder is trained on the
// dataset's pairs, written over the random one, and the contexts are its
// output; the option is part of the cache key.
func TestTextPretrain(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if _, err := synthfaces.Generate(dir, synthfaces.Options{Seed: 2, Train: 8, HeldOut: -1, PerIdentity: 4, Size: 32, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "prep")
	plain, err := Prepare(context.Background(), dir, cache, Options{Face: FaceSynthfaces, Vocab: VocabTiny, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Info.TextPretrain != nil {
		t.Fatalf("text_pretrain %+v without the option", plain.Info.TextPretrain)
	}
	o := Options{Face: FaceSynthfaces, Vocab: VocabTiny, Workers: 1, TextPretrain: textclip.Options{Steps: 30, Batch: 8, HeldOut: 0.25}}
	p, err := Prepare(context.Background(), dir, cache, o)
	if err != nil {
		t.Fatal(err)
	}
	tp := p.Info.TextPretrain
	if tp == nil || tp.Steps != 30 || tp.Pairs != 32 || tp.HeldOutPairs != 8 || p.Info.Key == plain.Info.Key {
		t.Fatalf("text_pretrain %+v, key %s (without: %s)", tp, p.Info.Key, plain.Info.Key)
	}
	t.Logf("%+v", *tp)
	a, _ := plain.Example(0)
	b, _ := p.Example(0)
	if slices.Equal(a.Context, b.Context) {
		t.Fatal("the pretrained encoder gives the random encoder's context")
	}
	// Same options again: loaded from the cache, same contexts.
	again, err := Prepare(context.Background(), dir, cache, o)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := again.Example(0)
	if !slices.Equal(b.Context, c.Context) || again.Info.TextPretrain == nil {
		t.Fatal("a second Prepare with the same options did not reproduce the cached encoding")
	}
}
