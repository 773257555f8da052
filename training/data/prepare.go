package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // dataset images may be JPEG
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/clip/clipvocab"
	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/synthfaces"
)

// generateEncoder writes the seeded-random text encoder folder with the
// vocabulary's tokenizer (nil: the tiny one).
func generateEncoder(dir string, cfg sdmodel.Config, vocab []byte) error {
	if vocab != nil {
		tmp, err := os.MkdirTemp("", "face0-vocab-")
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		defer os.RemoveAll(tmp)
		cfg.BPEPath = filepath.Join(tmp, "bpe.txt.gz")
		if err := os.WriteFile(cfg.BPEPath, vocab, 0o644); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	if err := sdmodel.Generate(dir, cfg); err != nil {
		return fmt.Errorf("data: text encoder: %w", err)
	}
	if bytes.Equal(vocab, clipvocab.GZ) {
		// CLIP's vocabulary is MIT-licensed; its licence travels with the
		// tokenizer into every exported model.
		lic := filepath.Join(dir, filepath.Dir(filepath.FromSlash(sdmodel.VocabFile)), "LICENSE-CLIP.txt")
		if err := os.WriteFile(lic, clipvocab.License, 0o644); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// key hashes everything the encoded examples depend on.
func key(l *Listing, o Options, vocab []byte) (string, error) {
	h := sha256.New()
	enc := o.TextEncoder
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%s\x00%s\x00%s\x00", InfoFormat, o.Latent.Size, o.Latent.Factor, o.Face, o.NoFace, o.Scan.EmbeddingField, o.Scan.Space)
	if o.Face == FaceSynthfaces {
		fmt.Fprintf(h, "%s\x00", synthfaces.EmbedderID())
	}
	fmt.Fprintf(h, "%d\x00%d\x00%d\x00%d\x00%d\x00", enc.Seed, enc.TextWidth, enc.TextLayers, enc.TextHeads, enc.ContextLength)
	if m := o.Base; m != nil {
		fmt.Fprintf(h, "base:%s\x00", m.Dir)
		for _, f := range m.Files() {
			fi, err := os.Stat(f)
			if err != nil {
				return "", fmt.Errorf("data: %w", err)
			}
			fmt.Fprintf(h, "%s\x00%d\x00%d\x00", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	if tp := o.TextPretrain; tp.Steps > 0 {
		fmt.Fprintf(h, "textclip:%d\x00%d\x00%g\x00%d\x00%d\x00%g\x00%d\x00%g\x00", tp.Steps, tp.Batch, tp.LR, tp.Dim, tp.ImageHidden, tp.Temperature, tp.Seed, tp.HeldOut)
	}
	if vocab != nil {
		h.Write(vocab)
	} else {
		h.Write([]byte("tiny-vocab"))
	}
	if o.Face != FacePrecomputed {
		fmt.Fprintf(h, "faceapi:%s\x00", o.FaceAPIDir)
	}
	fmt.Fprintf(h, "%s\x00", l.Dir)
	for _, it := range l.Items {
		fi, err := os.Stat(filepath.Join(l.Dir, it.File))
		if err != nil {
			return "", fmt.Errorf("data: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%s\x00", it.File, fi.Size(), fi.ModTime().UnixNano(), it.Caption, it.Space)
		_ = binary.Write(h, binary.LittleEndian, it.Embedding)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Prepare encodes the dataset folder into cacheDir, or loads it from there
// when cacheDir already holds this dataset encoded with these options (the
// key covers every file's name, size and modification time, the captions,
// the embeddings and the options). Each image becomes a triplet:
//
//   - its latent (Options.Latent: the image fitted to Size×Size, in [-1, 1],
//     space-to-depth, or with Options.Base the base VAE's latent mean;
//     stored unscaled, Example multiplies by LatentScale);
//   - its caption's last hidden state from the frozen text encoder, run once
//     through onnxruntime (the encoder in cacheDir/encoder: generated with
//     seeded random weights, then pretrained with Options.TextPretrain, or
//     the base model's with Options.Base);
//   - its face embedding: precomputed from the metadata, or detected.
//
// Files that cannot be used are reported (Info.Problems, Logf) and skipped;
// they never stop the run. The RandomEmbedding mixture is fitted over the
// embeddings of the examples with a face (mixture.json).
func Prepare(ctx context.Context, datasetDir, cacheDir string, o Options) (*Prepared, error) {
	o = o.norm()
	if err := o.Latent.Validate(); err != nil {
		return nil, err
	}
	if m := o.Base; m != nil {
		switch d := m.VAE.Downscale(); {
		case o.Latent.Factor != 1:
			return nil, fmt.Errorf("data: with a base model the images go to its VAE as pixels (Latent factor 1), not space-to-depth %d", o.Latent.Factor)
		case o.Latent.Size%d != 0:
			return nil, fmt.Errorf("data: image size %d is not a multiple of the base VAE's downscale %d", o.Latent.Size, d)
		case o.TextPretrain.Steps > 0:
			return nil, errors.New("data: the base model's text encoder is pretrained already; text pretraining is for a model trained from scratch")
		}
	}
	switch o.Face {
	case FaceAuto, FacePrecomputed, FaceDetect, FaceSynthfaces:
	default:
		return nil, fmt.Errorf("data: face source %q: use auto, precomputed, detect or synthfaces-id", o.Face)
	}
	switch o.NoFace {
	case NoFaceZero, NoFaceSkip:
	default:
		return nil, fmt.Errorf("data: no-face policy %q: use zero or skip", o.NoFace)
	}
	l, err := Scan(datasetDir, o.Scan)
	if err != nil {
		return nil, err
	}
	if o.Face == FaceAuto {
		var why string
		o.Face, why = autoFace(l)
		o.Logf("face embeddings: %s (%s)", o.Face, why)
	}
	vocab, err := vocabData(o.Vocab)
	if err != nil {
		return nil, err
	}
	k, err := key(l, o, vocab)
	if err != nil {
		return nil, err
	}
	if p, err := Load(cacheDir); err == nil && p.Info.Key == k {
		o.Logf("prepared dataset reused from %s (%d examples)", cacheDir, p.Info.Count)
		return p, nil
	}
	start := time.Now()
	for _, pr := range l.Problems {
		o.Logf("skipped %s", pr)
	}
	tmp := cacheDir + fmt.Sprintf(".tmp-%d", os.Getpid())
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := encode(ctx, l, o, vocab, tmp)
	if err != nil {
		return nil, err
	}
	p.Info.Key = k
	p.Info.Dataset = l.Dir
	p.Info.Seconds = time.Since(start).Seconds()
	if err := p.save(tmp); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(cacheDir); err != nil {
		return nil, fmt.Errorf("data: replace %s: %w", cacheDir, err)
	}
	if err := os.Rename(tmp, cacheDir); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	p.Dir = cacheDir
	return p, nil
}

// item is one image's encoding, before the text.
type item struct {
	latent []float32
	emb    []float32
	face   bool
	skip   string // why it was skipped ("": kept)
}

func encode(ctx context.Context, l *Listing, o Options, vocab []byte, dir string) (*Prepared, error) {
	// The frozen text encoder and its tokenizer.
	encDir := filepath.Join(dir, EncoderDir)
	if o.Base != nil {
		if err := writeBaseEncoder(encDir, o.Base); err != nil {
			return nil, err
		}
	} else if err := generateEncoder(encDir, o.TextEncoder, vocab); err != nil {
		return nil, err
	}
	enc, err := sdmodel.Load(encDir)
	if err != nil {
		return nil, fmt.Errorf("data: text encoder: %w", err)
	}

	var det *faceEmbedder
	if o.Face == FaceDetect {
		md, err := FaceAPIModelDir(o.FaceAPIDir, o.Models)
		if err != nil {
			return nil, err
		}
		if det, err = newFaceEmbedder(md); err != nil {
			return nil, err
		}
	}

	// Images: decode, latent, face embedding, in parallel.
	items := make([]item, len(l.Items))
	var done int
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				items[i] = encodeImage(l, l.Items[i], o, det)
				mu.Lock()
				done++
				o.Progress(done, len(items))
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range items {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if o.Base != nil {
		if err := vaeEncode(ctx, o.Base, items, o.Latent.Size, o.Logf); err != nil {
			return nil, err
		}
	}

	// One embedding space and dimension: the first kept face's.
	p := &Prepared{}
	info := &p.Info
	info.Format = InfoFormat
	info.FaceSource = o.Face
	for i, it := range items {
		if it.skip == "" && it.face {
			info.Dim = len(it.emb)
			info.Space = l.Items[i].Space
			switch o.Face {
			case FaceDetect:
				info.Space = FaceAPISpace
			case FaceSynthfaces:
				info.Space = synthfaces.IDSpace
			}
			break
		}
	}
	if info.Dim == 0 {
		return nil, fmt.Errorf("data: no image in %s has a face embedding (face source %s); nothing to condition on", l.Dir, o.Face)
	}
	if info.Space == "" {
		info.Space = "unknown"
	}
	var kept []int
	for i := range items {
		it := &items[i]
		if it.skip == "" && it.face && (len(it.emb) != info.Dim || (o.Face == FacePrecomputed && l.Items[i].Space != "" && l.Items[i].Space != info.Space)) {
			it.skip = fmt.Sprintf("embedding is %d-d in space %q, the dataset's is %d-d in %q", len(it.emb), l.Items[i].Space, info.Dim, info.Space)
		}
		if it.skip == "" && !it.face {
			if o.NoFace == NoFaceSkip {
				it.skip = "no face (no_face=skip)"
			} else {
				it.emb = make([]float32, info.Dim)
				info.NoFace++
			}
		}
		if it.skip != "" {
			pr := Problem{l.Items[i].File, it.skip}
			info.Problems = append(info.Problems, pr)
			o.Logf("skipped %s", pr)
			continue
		}
		kept = append(kept, i)
	}
	info.Problems = append(l.Problems, info.Problems...)
	if len(kept) == 0 {
		return nil, fmt.Errorf("data: no usable image in %s (%d problems, first: %s)", l.Dir, len(info.Problems), info.Problems[0])
	}

	// Text: the frozen encoder's last hidden state, once per distinct caption.
	man := enc.Manifest
	info.TextWidth, info.ContextLength, info.PadToken = man.TextWidth, man.ContextLength, man.PadToken
	info.Vocab = "tiny"
	if vocab != nil {
		info.Vocab = "clip"
	}
	if o.Base != nil {
		info.Vocab, info.Base = "base", o.Base.Dir
	}
	var captions []string
	index := map[string]int{}
	for _, i := range kept {
		c := l.Items[i].Caption
		if _, ok := index[c]; !ok {
			index[c] = len(captions)
			captions = append(captions, c)
			if n := len(enc.Tokenizer.Encode(c)) + 2; n > man.FaceTokenStart {
				info.Truncate++
			}
		}
	}
	if info.Truncate > 0 {
		o.Logf("%d of %d distinct captions are longer than the %d text positions before the face tokens; their ends are cut (as at sampling time)", info.Truncate, len(captions), man.FaceTokenStart)
	}
	switch tp := o.TextPretrain; {
	case tp.Steps <= 0:
	case tp.Batch <= 0 && len(kept) < MinTextPairs(tp.HeldOut):
		o.Logf("WARNING: text encoder pretraining skipped: %d caption-image pairs are too few (it needs %d: a held-out batch of %d to measure on and more to train on); the text encoder keeps random weights, so the model will hardly follow its captions", len(kept), MinTextPairs(tp.HeldOut), MinTextBatch)
	default:
		if enc, info.TextPretrain, err = pretrainText(ctx, enc, l, kept, items, o); err != nil {
			return nil, err
		}
	}
	// The empty prompt comes last, encoded in the same batch run as the
	// captions: the unconditional context of guidance and text drop.
	hidden, err := encodeTexts(ctx, enc, append(captions, ""))
	if err != nil {
		return nil, err
	}
	p.empty = slices.Clone(hidden[len(captions)*man.ContextLength*man.TextWidth:])

	// Assemble, with latent statistics.
	lat := o.Latent
	info.ImageSize, info.Factor = lat.Size, lat.Factor
	info.LatentChannels, info.LatentSize = lat.Channels(), lat.Side()
	if o.Base != nil {
		info.Factor = o.Base.VAE.Downscale()
		info.LatentChannels, info.LatentSize = o.Base.VAE.LatentChannels, lat.Size/info.Factor
	}
	nc := man.ContextLength * man.TextWidth
	info.Count = len(kept)
	p.latents = make([]float32, 0, len(kept)*lat.Len())
	p.contexts = make([]float32, 0, len(kept)*nc)
	p.embeddings = make([]float32, 0, len(kept)*info.Dim)
	p.face = make([]float32, 0, len(kept))
	var sum, sum2 float64
	for _, i := range kept {
		it := items[i]
		for _, v := range it.latent {
			sum += float64(v)
			sum2 += float64(v) * float64(v)
		}
		p.latents = append(p.latents, it.latent...)
		c := index[l.Items[i].Caption]
		p.contexts = append(p.contexts, hidden[c*nc:(c+1)*nc]...)
		p.embeddings = append(p.embeddings, it.emb...)
		f := float32(0)
		if it.face {
			f = 1
		}
		p.face = append(p.face, f)
		info.Files = append(info.Files, l.Items[i].File)
	}
	n := float64(len(p.latents))
	info.LatentMean = sum / n
	info.LatentStd = math.Sqrt(math.Max(sum2/n-info.LatentMean*info.LatentMean, 0))
	info.LatentScale = 1
	if info.LatentStd > 1e-3 {
		// Three significant digits, like SD's 0.18215 is a rounded 1/std.
		s := 1 / info.LatentStd
		e := math.Pow(10, math.Floor(math.Log10(s))-2)
		info.LatentScale = math.Round(s/e) * e
	}
	if o.Base != nil {
		info.LatentScale = o.Base.VAE.ScalingFactor // SD's, as its UNet was trained
	}

	// The RandomEmbedding mixture over the training faces.
	if embs := p.Embeddings(); len(embs) > 0 {
		mix, err := fitMixture(embs)
		if err != nil {
			o.Logf("no embedding mixture: %v", err)
		} else {
			b, _ := json.MarshalIndent(mix, "", " ")
			if err := os.WriteFile(filepath.Join(dir, MixtureFile), b, 0o644); err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
		}
	}
	return p, nil
}

// fitMixture fits about one component per 8 distinct embeddings, 1 to 8.
func fitMixture(embs [][]float32) (*f0.Mixture, error) {
	distinct := map[string]bool{}
	for _, e := range embs {
		b := make([]byte, 4*len(e))
		for i, v := range e {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		distinct[string(b)] = true
	}
	k := min(8, max(1, len(distinct)/8))
	return f0.FitMixture(embs, k, 1)
}

func encodeImage(l *Listing, it Item, o Options, det *faceEmbedder) item {
	f, err := os.Open(filepath.Join(l.Dir, it.File))
	if err != nil {
		return item{skip: err.Error()}
	}
	img, _, err := image.Decode(f)
	f.Close()
	if err != nil {
		return item{skip: "not a readable PNG or JPEG image: " + err.Error()}
	}
	if b := img.Bounds(); b.Dx() < 1 || b.Dy() < 1 {
		return item{skip: "empty image"}
	}
	out := item{latent: o.Latent.Encode(img)}
	switch o.Face {
	case FacePrecomputed:
		if it.Embedding != nil {
			out.emb, out.face = it.Embedding, true
		}
	case FaceDetect:
		v, ok, err := det.embed(img)
		if err != nil {
			return item{skip: "face detection failed: " + err.Error()}
		}
		out.emb, out.face = v, ok
	case FaceSynthfaces:
		out.emb, out.face = synthfaces.Embed(img).Vector, true
	}
	for _, v := range out.emb {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return item{skip: "the face embedding has a non-finite value"}
		}
	}
	return out
}

// encodeTexts runs the text encoder on each caption, in batches.
func encodeTexts(ctx context.Context, enc *sdmodel.Model, captions []string) ([]float32, error) {
	s, err := ort.Load(enc.Path(sdmodel.TextEncoderFile), ort.Options{})
	if err != nil {
		return nil, fmt.Errorf("data: the frozen text encoder runs in onnxruntime: %w", err)
	}
	defer s.Close()
	man := enc.Manifest
	L := man.ContextLength
	out := make([]float32, 0, len(captions)*L*man.TextWidth)
	const batch = 64
	for start := 0; start < len(captions); start += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(batch, len(captions)-start)
		ids := make([]int32, 0, n*L)
		for _, c := range captions[start : start+n] {
			ids = append(ids, enc.Tokenizer.Tokenize(c, clip.WithContextLength(L), clip.WithPadToken(int32(man.PadToken)))...)
		}
		in := ort.Ints(ids, enc.InputIDsType, int64(n), int64(L))
		res, err := s.RunContext(ctx, map[string]ort.Tensor{sdmodel.InInputIDs: in})
		if err != nil {
			return nil, fmt.Errorf("data: text encoder: %w", err)
		}
		h := res[sdmodel.OutLastHidden].Float32()
		if len(h) != n*L*man.TextWidth {
			return nil, fmt.Errorf("data: text encoder gave %d values, want %d", len(h), n*L*man.TextWidth)
		}
		out = append(out, h...)
	}
	return out, nil
}
