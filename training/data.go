package training

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/face0/face0/ml/face0"
	"github.com/face0/face0/training/model"
)

// Example is one training triplet, already encoded: the image's VAE latent
// (scaled by the latent scale, [C,H,W]), its caption's text-encoder output
// ([L,D], the last FaceTokens rows are overridden), and its face
// embedding ([E]).
type Example struct {
	Latent    []float32
	Context   []float32
	Embedding []float32
	// NoFace marks an example without a face (none was found in the
	// image): its face tokens are always zeroed, as a dropped face's are.
	// The face-drop coin is still drawn, so the random streams do not
	// depend on it.
	NoFace bool
}

// Dataset is random access to encoded examples. Example must return the
// same values for the same index every time: exact resume relies on it.
type Dataset interface {
	Len() int
	Example(i int) (Example, error)
}

// EmptyPrompter is a Dataset that also has the empty prompt's context:
// the frozen text encoder's output for "" ([L,D], the same tokenisation as
// at sampling time), which replaces a sample's context when its text is
// dropped (Config.TextDropProb).
type EmptyPrompter interface {
	EmptyContext() []float32
}

// emptyContext is data's empty-prompt context when cfg drops the text (nil
// otherwise), checked against the model's context shape.
func emptyContext(cfg Config, data Dataset) ([]float32, error) {
	if cfg.TextDropProb <= 0 {
		return nil, nil
	}
	ep, ok := data.(EmptyPrompter)
	if !ok {
		return nil, fmt.Errorf("training: text_drop_prob %g needs the empty prompt's context, and the dataset (%T) has none", cfg.TextDropProb, data)
	}
	c := ep.EmptyContext()
	if want := cfg.Model.ContextLength * cfg.Model.TextWidth; len(c) != want {
		return nil, fmt.Errorf("training: the dataset's empty-prompt context has %d values, the model wants %d ([%d,%d])", len(c), want, cfg.Model.ContextLength, cfg.Model.TextWidth)
	}
	return c, nil
}

// Random streams of a run, separated like ml/face0's domains.
const (
	domainOrder face0.Domain = 0x6f72646572   // "order": per-epoch permutation
	domainBatch face0.Domain = 0x626174636800 // "batch": timesteps, face drops, noise
	domainSynth face0.Domain = 0x73796e7468   // "synth": the synthetic dataset
)

// mix combines a run seed with counters into one 64-bit seed (SplitMix64
// steps), so every (step, micro-batch) has its own independent stream and
// resuming needs no generator state, only the counters.
func mix(seed uint64, xs ...uint64) uint64 {
	h := seed
	for _, x := range xs {
		h = splitmix64(h ^ splitmix64(x+0x9e3779b97f4a7c15))
	}
	return h
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// permutation is epoch's shuffled order of n examples.
func permutation(seed uint64, epoch, n int) []int {
	s := mix(seed, uint64(domainOrder), uint64(epoch))
	return rand.New(rand.NewPCG(s, splitmix64(s))).Perm(n)
}

// Batch is one micro-batch as the step graph takes it. Everything random
// is drawn on the host, so a batch is a pure function of (seed, step,
// micro-batch, data cursor).
type Batch struct {
	Size      int
	Latents   []float32 // x₀ [B,C,H,W]
	Noise     []float32 // ε [B,C,H,W]
	Timesteps []float32 // t [B], integers 0..N-1 as float
	SqrtAB    []float32 // √ᾱ_t [B]
	Sqrt1mAB  []float32 // √(1-ᾱ_t) [B]
	Context   []float32 // [B,L,D]
	Emb       []float32 // [B,E]
	Keep      []float32 // [B]: 1 keeps the face tokens, 0 zeroes them
	// KeepText is 1 where the sample's caption context was kept, 0 where it
	// was replaced by the empty prompt's (already applied to Context; not a
	// graph input).
	KeepText []float32 // [B]
}

// makeBatch assembles examples idx with random draws from stream: for each
// sample a uniform timestep and a face-drop coin, then the noise of the
// whole batch, then for each sample a text-drop coin. The text coins come
// last and are drawn whatever TextDropProb is, so they leave the earlier
// draws (those of runs before text drop existed) unchanged, and the stream
// stays a pure function of (seed, step, micro-batch). empty is the empty
// prompt's context (needed when cfg.TextDropProb > 0).
func makeBatch(cfg Config, alphasCumprod []float64, data Dataset, idx []int, stream uint64, empty []float32) (*Batch, error) {
	m := cfg.Model
	B := len(idx)
	lat := m.LatentChannels * m.LatentSize * m.LatentSize
	ctx := m.ContextLength * m.TextWidth
	b := &Batch{
		Size:      B,
		Latents:   make([]float32, 0, B*lat),
		Noise:     make([]float32, B*lat),
		Timesteps: make([]float32, B),
		SqrtAB:    make([]float32, B),
		Sqrt1mAB:  make([]float32, B),
		Context:   make([]float32, 0, B*ctx),
		Emb:       make([]float32, 0, B*m.EmbeddingDim),
		Keep:      make([]float32, B),
		KeepText:  make([]float32, B),
	}
	if cfg.TextDropProb > 0 && len(empty) != ctx {
		return nil, fmt.Errorf("training: text_drop_prob %g without the empty prompt's context (%d values, want %d)", cfg.TextDropProb, len(empty), ctx)
	}
	noFace := make([]bool, 0, B)
	for _, i := range idx {
		ex, err := data.Example(i)
		if err != nil {
			return nil, fmt.Errorf("training: example %d: %w", i, err)
		}
		if len(ex.Latent) != lat || len(ex.Context) != ctx || len(ex.Embedding) != m.EmbeddingDim {
			return nil, fmt.Errorf("training: example %d has latent %d, context %d, embedding %d values; the model wants %d ([%d,%d,%d]), %d ([%d,%d]) and %d",
				i, len(ex.Latent), len(ex.Context), len(ex.Embedding),
				lat, m.LatentChannels, m.LatentSize, m.LatentSize, ctx, m.ContextLength, m.TextWidth, m.EmbeddingDim)
		}
		b.Latents = append(b.Latents, ex.Latent...)
		b.Context = append(b.Context, ex.Context...)
		b.Emb = append(b.Emb, ex.Embedding...)
		noFace = append(noFace, ex.NoFace)
	}
	g := face0.NewGaussian(stream, domainBatch)
	n := len(alphasCumprod)
	for s := range B {
		t := min(int(g.Uniform()*float64(n)), n-1)
		ab := alphasCumprod[t]
		b.Timesteps[s] = float32(t)
		b.SqrtAB[s] = float32(math.Sqrt(ab))
		b.Sqrt1mAB[s] = float32(math.Sqrt(1 - ab))
		if g.Uniform() >= cfg.FaceDropProb && !noFace[s] {
			b.Keep[s] = 1
		}
	}
	g.Fill(b.Noise)
	for s := range B {
		if g.Uniform() >= cfg.TextDropProb {
			b.KeepText[s] = 1
		} else {
			copy(b.Context[s*ctx:(s+1)*ctx], empty)
		}
	}
	return b, nil
}

// Synthetic is a generated dataset with a learnable relation between its
// parts, for tests and smoke runs: embeddings e and contexts c are N(0, 1);
// each latent is A·e[:8] + Bm·mean(c)[:4] for fixed random A, Bm, scaled to
// unit variance, so the latents live in a 12-dimensional subspace that the
// face embedding and the text pick the point in.
type Synthetic struct {
	cfg  model.Config
	n    int
	seed uint64
	a    []float64 // [lat, 8]
	bm   []float64 // [lat, 4]
}

const synthFace, synthText = 8, 4

// NewSynthetic makes n examples for cfg.
func NewSynthetic(cfg model.Config, n int, seed uint64) *Synthetic {
	lat := cfg.LatentChannels * cfg.LatentSize * cfg.LatentSize
	s := &Synthetic{cfg: cfg, n: n, seed: seed, a: make([]float64, lat*synthFace), bm: make([]float64, lat*synthText)}
	g := face0.NewGaussian(mix(seed, 0), domainSynth)
	// Var(A·e) = 1; Var(Bm·c̄) ≈ 4 · (L/16) · (1/74) ≈ 0.26 for L = 77.
	for i := range s.a {
		s.a[i] = g.Float64() / math.Sqrt(synthFace)
	}
	for i := range s.bm {
		s.bm[i] = g.Float64() * math.Sqrt(float64(cfg.ContextLength)/synthText) * 0.5
	}
	return s
}

// Len implements Dataset.
func (s *Synthetic) Len() int { return s.n }

// EmptyContext implements EmptyPrompter: a fixed N(0, 1) context, as
// unrelated to the examples' as an encoded "" would be.
func (s *Synthetic) EmptyContext() []float32 {
	c := make([]float32, s.cfg.ContextLength*s.cfg.TextWidth)
	face0.NewGaussian(mix(s.seed, 2), domainSynth).Fill(c)
	return c
}

// Example implements Dataset.
func (s *Synthetic) Example(i int) (Example, error) {
	if i < 0 || i >= s.n {
		return Example{}, fmt.Errorf("synthetic: index %d out of range [0, %d)", i, s.n)
	}
	c := s.cfg
	g := face0.NewGaussian(mix(s.seed, 1, uint64(i)), domainSynth)
	ex := Example{
		Embedding: make([]float32, c.EmbeddingDim),
		Context:   make([]float32, c.ContextLength*c.TextWidth),
		Latent:    make([]float32, c.LatentChannels*c.LatentSize*c.LatentSize),
	}
	g.Fill(ex.Embedding)
	g.Fill(ex.Context)
	mean := make([]float64, synthText)
	rows := c.FaceTokenStart() // the rows the face tokens do not override
	for l := range rows {
		for d := range min(synthText, c.TextWidth) {
			mean[d] += float64(ex.Context[l*c.TextWidth+d]) / float64(rows)
		}
	}
	for j := range ex.Latent {
		v := 0.0
		for k := range min(synthFace, c.EmbeddingDim) {
			v += s.a[j*synthFace+k] * float64(ex.Embedding[k])
		}
		for k := range synthText {
			v += s.bm[j*synthText+k] * mean[k]
		}
		ex.Latent[j] = float32(v)
	}
	return ex, nil
}
