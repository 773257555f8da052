package synthfaces

import (
	"bytes"
	"crypto/sha256"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDeterministic(t *testing.T) {
	for _, c := range []struct{ id, j int }{{0, 0}, {7, 3}, {HeldOutBase + 2, 1}} {
		a := RenderSample(42, c.id, c.j, RenderOptions{Size: 64})
		b := RenderSample(42, c.id, c.j, RenderOptions{Size: 64})
		if !bytes.Equal(a.Pixels.Pix, b.Pixels.Pix) || a.Caption != b.Caption || !reflect.DeepEqual(a.Identity, b.Identity) {
			t.Fatalf("identity %d image %d differs between renders", c.id, c.j)
		}
	}
	// identity is shared by all images of an identity, and differs between identities and seeds
	if !reflect.DeepEqual(RenderSample(1, 5, 0, RenderOptions{Size: 16}).Identity, RenderSample(1, 5, 3, RenderOptions{Size: 16}).Identity) {
		t.Error("identity attributes differ between images of one identity")
	}
	if reflect.DeepEqual(NewIdentity(1, 5), NewIdentity(2, 5)) || reflect.DeepEqual(NewIdentity(1, 5), NewIdentity(1, 6)) {
		t.Error("identities do not depend on seed and id")
	}
}

func TestGenerateDeterministicBytes(t *testing.T) {
	hash := func(workers int) (map[string][32]byte, Manifest) {
		dir := t.TempDir()
		m, err := Generate(dir, Options{Seed: 9, Train: 3, HeldOut: 2, PerIdentity: 2, Size: 48, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][32]byte{}
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, p)
			out[rel] = sha256.Sum256(b)
			return nil
		})
		return out, m
	}
	a, m := hash(1)
	b, _ := hash(3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("generated files differ between runs / worker counts")
	}
	// 10 images × (png + txt) + 2 metadata + dataset.json
	if len(a) != 23 || m.Images != 10 {
		t.Fatalf("got %d files, %d images", len(a), m.Images)
	}
	if _, ok := a[filepath.Join(SplitHeldOut, FileName(HeldOutBase+1, 1))]; !ok {
		t.Errorf("held-out file missing: %v", a)
	}
}

func TestGenerateLayout(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, Options{Seed: 3, Train: 2, HeldOut: 1, PerIdentity: 3, Size: 40}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetadata(filepath.Join(dir, SplitTrain, "metadata.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 {
		t.Fatalf("%d train records", len(recs))
	}
	for i, r := range recs {
		if r.Identity != i/3 || r.Image != i%3 || r.Split != SplitTrain {
			t.Errorf("record %d: identity %d image %d split %s", i, r.Identity, r.Image, r.Split)
		}
		txt, err := os.ReadFile(filepath.Join(dir, SplitTrain, strings.TrimSuffix(r.File, ".png")+".txt"))
		if err != nil || string(txt) != r.Caption {
			t.Errorf("sidecar of %s: %q, %v", r.File, txt, err)
		}
		f, err := os.Open(filepath.Join(dir, SplitTrain, r.File))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 40 || img.Bounds().Dy() != 40 {
			t.Errorf("%s: %v %v", r.File, err, img.Bounds())
		}
		want := NewIdentity(3, r.Identity)
		want.resolve()
		if !reflect.DeepEqual(r.Attributes, want) {
			t.Errorf("%s: identity attributes do not round-trip", r.File)
		}
		if r.Embedding.Space != EmbeddingSpace || len(r.Embedding.Vector) != EmbeddingDim {
			t.Errorf("%s: embedding %s/%d", r.File, r.Embedding.Space, len(r.Embedding.Vector))
		}
		b := r.FaceBox
		if b[0] < 0 || b[1] < 0 || b[2] > 40 || b[3] > 40 || b[2]-b[0] < 10 || b[3]-b[1] < 10 {
			t.Errorf("%s: face box %v", r.File, b)
		}
	}
	held, err := ReadMetadata(filepath.Join(dir, SplitHeldOut, "metadata.jsonl"))
	if err != nil || len(held) != 3 || held[0].Identity != HeldOutBase {
		t.Fatalf("held-out: %v %d", err, len(held))
	}
}

func TestAttributeCoverage(t *testing.T) {
	seen := map[string]map[string]bool{}
	add := func(k, v string) {
		if seen[k] == nil {
			seen[k] = map[string]bool{}
		}
		seen[k][v] = true
	}
	for id := 0; id < 300; id++ {
		a := NewIdentity(11, id)
		add("skin", a.SkinTone)
		add("face", a.FaceShape)
		add("eyecolor", a.EyeColor)
		add("eyeshape", a.EyeShape)
		add("brow", a.BrowShape)
		add("haircolor", a.HairColor)
		add("hairstyle", a.HairStyle)
		add("nose", a.NoseShape)
		add("lip", a.LipColor)
		add("facialhair", a.FacialHair)
		add("freckles", map[bool]string{true: "y", false: "n"}[a.Freckles])
		add("mole", map[bool]string{true: "y", false: "n"}[a.Mole])
		for j := 0; j < 4; j++ {
			s, _ := NewScene(11, id, j)
			add("style", s.Style)
			add("bg", s.Background)
			add("hat", s.Hat)
			add("glasses", s.Glasses)
			add("expr", s.Expression)
			if s.HatColor != "" {
				add("hatcolor", s.HatColor)
			}
			if s.ClothingColor != "" {
				add("cloth", s.ClothingColor)
			}
		}
	}
	want := map[string]int{
		"skin": len(skinTones), "face": len(FaceShapes), "eyecolor": len(eyeColors), "eyeshape": len(EyeShapes),
		"brow": len(BrowShapes), "haircolor": len(hairColors), "hairstyle": len(HairStyles), "nose": len(NoseShapes),
		"lip": len(lipColors), "facialhair": len(FacialHairs), "freckles": 2, "mole": 2,
		"style": len(Styles), "bg": len(BackgroundColors), "hat": len(Hats), "glasses": len(Glasses),
		"expr": len(Expressions), "hatcolor": len(ItemColors), "cloth": len(ItemColors),
	}
	for k, n := range want {
		if len(seen[k]) != n {
			t.Errorf("%s: saw %d of %d values: %v", k, len(seen[k]), n, seen[k])
		}
	}
}

// identityWords are words that only identity attributes would bring into a caption.
var identityWords = []string{"hair", "eye", "skin", "beard", "mustache", "goatee", "freckle", "mole", "nose", "lip",
	"bald", "curly", "fringe", "spiky", "blonde", "ginger", "auburn", "brown", "hazel", "oval", "round face", "square face", "man", "woman"}

func TestCaptionsNameExactlyTheScene(t *testing.T) {
	for id := 0; id < 200; id++ {
		for j := 0; j < 3; j++ {
			s, _ := NewScene(5, id, j)
			c := Caption(s)
			got, ok := ParseCaption(c)
			if !ok || got != s {
				t.Fatalf("caption %q parses to %+v (ok %v), want %+v", c, got, ok, s)
			}
			for _, w := range identityWords {
				if strings.Contains(c, w) {
					t.Fatalf("caption %q mentions identity word %q", c, w)
				}
			}
			if strings.Contains(c, " a a") || strings.Contains(c, "a o") || strings.Contains(c, "a e") {
				t.Fatalf("article: %q", c)
			}
		}
	}
	s := Scene{Style: StyleCartoon, Background: "teal", Hat: "cap", HatColor: "red", Glasses: "round", ClothingColor: "orange", Expression: "smile"}
	if got, want := Caption(s), "a flat cartoon portrait of a smiling person wearing a red cap, round glasses and an orange shirt, on a teal background"; got != want {
		t.Errorf("Caption = %q, want %q", got, want)
	}
	s = Scene{Style: StyleSketch, Background: "orange", Hat: "none", Glasses: "sunglasses", Expression: "open"}
	if got, want := Caption(s), "a pencil sketch of an open-mouthed person wearing sunglasses and a shirt, on an orange background"; got != want {
		t.Errorf("Caption = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "a photo portrait of a person", "a photo portrait of a smiling person wearing a shirt, on a mauve background"} {
		if _, ok := ParseCaption(bad); ok {
			t.Errorf("ParseCaption(%q) ok", bad)
		}
	}
}

func TestAttrEmbedding(t *testing.T) {
	e0 := AttrEmbedding(NewIdentity(1, 0))
	var n float64
	for _, v := range e0.Vector {
		n += float64(v) * float64(v)
	}
	if n < 0.999 || n > 1.001 {
		t.Errorf("norm² %v", n)
	}
	// nearest neighbour among 100 identities is always itself, and different identities are not too close
	var embs [][]float32
	for id := 0; id < 100; id++ {
		embs = append(embs, AttrEmbedding(NewIdentity(1, id)).Vector)
	}
	maxCos := -1.0
	for i := range embs {
		for j := range embs {
			if i != j {
				if c := cosine(embs[i], embs[j]); c > maxCos {
					maxCos = c
				}
			}
		}
	}
	if maxCos > 0.95 {
		t.Errorf("two different identities have cosine %.3f", maxCos)
	}
	t.Logf("max inter-identity cosine over 100 identities: %.3f", maxCos)
}

func BenchmarkRender128(b *testing.B) {
	for i := 0; i < b.N; i++ {
		RenderSample(1, i%50, i%8, RenderOptions{Size: 128})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkRender32(b *testing.B) {
	for i := 0; i < b.N; i++ {
		RenderSample(1, i%50, i%8, RenderOptions{Size: 32})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkGenerate128(b *testing.B) {
	dir := b.TempDir()
	n := 0
	for i := 0; i < b.N; i++ {
		m, err := Generate(dir, Options{Seed: uint64(i), Train: 4, HeldOut: 1, PerIdentity: 4})
		if err != nil {
			b.Fatal(err)
		}
		n += m.Images
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
}
