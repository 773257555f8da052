package face0

import (
	"context"
	"fmt"
	"image"
	"unsafe"

	"github.com/face0/face0/ml/clip"
	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/sdk"
)

// encode runs the tokenizer and the text encoder on one prompt and returns
// the last hidden state, [ContextLength × TextWidth] values.
func (m *model) encode(ctx context.Context, text, device string) ([]float32, error) {
	man := m.Manifest
	ids := m.Tokenizer.Tokenize(text, clip.WithContextLength(man.ContextLength), clip.WithPadToken(int32(man.PadToken)))
	in := ort.Ints(ids, m.InputIDsType, 1, int64(len(ids)))
	s, release, err := m.session(sdmodel.TextEncoderFile, device)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := s.RunContext(ctx, map[string]ort.Tensor{sdmodel.InInputIDs: in})
	if err != nil {
		return nil, err
	}
	h := out[sdmodel.OutLastHidden].Float32()
	if want := man.ContextLength * man.TextWidth; len(h) != want {
		return nil, fmt.Errorf("%s: %s has %d values, want %d×%d", s.Path(), sdmodel.OutLastHidden, len(h), man.ContextLength, man.TextWidth)
	}
	return h, nil
}

// promptTooLong reports how many of the prompt's tokens the face tokens
// overwrite (0 if it fits before them).
func (m *model) promptTooLong(text string) int {
	// Start token + BPE tokens + end token must end before the face tokens.
	n := len(m.Tokenizer.Encode(text)) + 2
	return max(0, n-m.Manifest.FaceTokenStart)
}

// emptyPrompt is the encoding of "", which the unconditioned and face-only
// branches use; it depends only on the model, so it is computed once.
func (m *model) emptyPrompt(ctx context.Context, device string) ([]float32, error) {
	m.emptyMu.Lock()
	defer m.emptyMu.Unlock()
	if m.empty != nil {
		return m.empty, nil
	}
	e, err := m.encode(ctx, "", device)
	if err != nil {
		return nil, err
	}
	m.empty = e
	return e, nil
}

// project runs the projection MLP on embeddings [n, E] and returns the face
// tokens [n, FaceTokens, TextWidth]. The last few results are kept: the same
// face is typically reused across many runs (other seeds, prompts, weights),
// and skipping the call also keeps the projection's onnxruntime threads
// from spinning beside the UNet's.
func (m *model) project(ctx context.Context, emb []float32, n int, device string) ([]float32, error) {
	key := string(unsafeBytes(emb))
	m.projMu.Lock()
	for _, e := range m.projCache {
		if e.key == key {
			m.projMu.Unlock()
			return e.tokens, nil
		}
	}
	m.projMu.Unlock()
	tokens, err := m.runProjection(ctx, emb, n, device)
	if err != nil {
		return nil, err
	}
	m.projMu.Lock()
	m.projCache = append(m.projCache, projEntry{key, tokens})
	if len(m.projCache) > 8 {
		m.projCache = m.projCache[1:]
	}
	m.projMu.Unlock()
	return tokens, nil
}

type projEntry struct {
	key    string // the embeddings' bytes
	tokens []float32
}

// unsafeBytes views float32s as bytes, for use as a map key.
func unsafeBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

func (m *model) runProjection(ctx context.Context, emb []float32, n int, device string) ([]float32, error) {
	s, release, err := m.session(sdmodel.ProjectionFile, device)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := s.RunContext(ctx, map[string]ort.Tensor{sdmodel.InEmbedding: ort.F32(emb, int64(n), int64(m.Manifest.Embedding.Dim))})
	if err != nil {
		return nil, err
	}
	tok := out[sdmodel.OutFaceTokens].Float32()
	if want := n * m.Manifest.FaceTokens * m.Manifest.TextWidth; len(tok) != want {
		return nil, fmt.Errorf("%s: %s has %d values, want %d", s.Path(), sdmodel.OutFaceTokens, len(tok), want)
	}
	return tok, nil
}

// checkConditioning checks a CONDITIONING input against the model and
// returns how many prompts it holds (1, or one per sample).
func (m *model) checkConditioning(port string, t sdk.Tensor, batch int) error {
	T, D := int64(m.Manifest.ContextLength), int64(m.Manifest.TextWidth)
	if len(t.Shape) != 3 || t.Shape[1] != T || t.Shape[2] != D {
		return fmt.Errorf("input %q: CONDITIONING of shape %v does not fit model %q, whose UNet takes [batch, %d, %d]: encode the prompt with EncodeText and the same model", port, t.Shape, m.name, T, D)
	}
	if b := t.Shape[0]; b != 1 && b != int64(batch) {
		return fmt.Errorf("input %q: CONDITIONING holds %d prompts; give 1, or one per sample (batch_size %d)", port, b, batch)
	}
	if int64(len(t.Data)) != t.Shape[0]*T*D {
		return fmt.Errorf("input %q: CONDITIONING has %d values for shape %v", port, len(t.Data), t.Shape)
	}
	return nil
}

// faceTokens projects the face embedding (with per-sample noise if asked)
// into the face tokens, or returns nil when there is no face.
func (m *model) faceTokens(ctx *sdk.Context, in samplerIn, batch int) ([]float32, error) {
	if in.Face == nil {
		return nil, nil
	}
	if err := m.needFace("Face0Sampler"); err != nil {
		return nil, err
	}
	man := m.Manifest
	if sp := in.Face.Space; sp != "" && sp != man.Embedding.Space {
		return nil, fmt.Errorf("input \"face_embedding\" is in embedding space %q but model %q was trained on %q: embed the face with the matching model", sp, m.name, man.Embedding.Space)
	}
	if got := len(in.Face.Vector); got != man.Embedding.Dim {
		return nil, fmt.Errorf("input \"face_embedding\" has %d values but model %q takes %d-d embeddings (space %q)", got, m.name, man.Embedding.Dim, man.Embedding.Space)
	}
	if in.Noise <= 0 {
		return m.project(ctx, in.Face.Vector, 1, in.Device)
	}
	// Each sample draws its own noise from seed+i, so a sample does not
	// depend on the batch around it, like its latent.
	std := relStd(in.Face.Vector, in.Noise)
	emb := make([]float32, 0, batch*man.Embedding.Dim)
	for b := range batch {
		emb = append(emb, f0.AddNoise(in.Face.Vector, std, uint64(in.Seed)+uint64(b))...)
	}
	return m.project(ctx, emb, batch, in.Device)
}

// branchPlan is the guidance's batch layout. Without a face, the face
// tokens are zero in every branch, so text+face equals text-only and
// face-only equals the unconditioned branch (unless a negative prompt makes
// that one differ): their weights are merged and the UNet batch shrinks.
func branchPlan(g f0.Guidance, haveFace, haveNegative bool) f0.Plan {
	if haveFace {
		return g.Plan()
	}
	c := g.Coefficients()
	c[f0.Text] += c[f0.TextFace]
	c[f0.TextFace] = 0
	if !haveNegative {
		c[f0.Uncond] += c[f0.Face]
		c[f0.Face] = 0
	}
	var p f0.Plan
	for b, w := range c {
		if w != 0 {
			p.Branches = append(p.Branches, f0.Branch(b))
			p.Coeffs = append(p.Coeffs, w)
		}
	}
	return p
}

// newJob checks the sampler's inputs against the model and prepares a run:
// contexts, scheduler and the UNet session (release it when done).
func (m *model) newJob(ctx *sdk.Context, in samplerIn) (*job, func(), error) {
	man := m.Manifest
	width, height := in.Width, in.Height
	if width == 0 {
		width = man.SampleSize
	}
	if height == 0 {
		height = man.SampleSize
	}
	f := man.VAEScaleFactor
	if width%f != 0 || height%f != 0 || width <= 0 || height <= 0 {
		return nil, nil, fmt.Errorf("width %d and height %d must be positive multiples of %d (the VAE's scale factor)", width, height, f)
	}
	batch := max(in.BatchSize, 1)
	if err := m.checkConditioning("positive", in.Positive, batch); err != nil {
		return nil, nil, err
	}
	if in.Negative != nil {
		if err := m.checkConditioning("negative", *in.Negative, batch); err != nil {
			return nil, nil, err
		}
	}
	kind, ok := schedulerKinds[in.Scheduler]
	if !ok {
		return nil, nil, fmt.Errorf("scheduler %q: use ddim, euler or dpm++2m", in.Scheduler)
	}
	cfg, err := m.schedulerConfig(kind)
	if err != nil {
		return nil, nil, err
	}
	if in.Eta != 0 && kind != sched.DDIM {
		return nil, nil, fmt.Errorf("eta %g: only the ddim scheduler takes eta (set eta to 0 for %s)", in.Eta, in.Scheduler)
	}
	cfg.Eta = in.Eta
	s, err := sched.New(kind, cfg, in.Steps)
	if err != nil {
		return nil, nil, fmt.Errorf("model %q: %w", m.name, err)
	}

	face, err := m.faceTokens(ctx, in, batch)
	if err != nil {
		return nil, nil, err
	}
	g := f0.Guidance{W: in.W, C: in.C, A: in.A}
	plan := branchPlan(g, face != nil, in.Negative != nil)
	shape := f0.ContextShape{Tokens: man.ContextLength, Dim: man.TextWidth, FaceTokens: man.FaceTokens}
	if man.FaceTokenStart+man.FaceTokens != man.ContextLength {
		return nil, nil, fmt.Errorf("model %q: face tokens start at %d but the sampler puts them at the end of the %d-token context (%s)", m.name, man.FaceTokenStart, man.ContextLength, sdmodel.ManifestFile)
	}
	cond := f0.Conditioning{Prompt: in.Positive.Data, Face: face}
	if in.Negative != nil {
		cond.Negative = in.Negative.Data
	}
	if in.Negative == nil || plan.Has(f0.Face) {
		if cond.Empty, err = m.emptyPrompt(ctx, in.Device); err != nil {
			return nil, nil, err
		}
	}
	if plan.NeedsFace() && face == nil {
		cond.Face = make([]float32, man.FaceTokens*man.TextWidth) // no face: zeroed tokens
	}
	contexts, err := plan.Contexts(nil, shape, batch, cond)
	if err != nil {
		return nil, nil, err
	}
	unet, release, err := m.session(sdmodel.UNetFile, in.Device)
	if err != nil {
		return nil, nil, err
	}
	return &job{
		unet: unet, plan: plan, contexts: contexts, tokens: man.ContextLength, dim: man.TextWidth,
		sched: s, batch: batch, channels: man.LatentChannels, h: height / f, w: width / f, seed: uint64(in.Seed),
		latentScale: float32(man.LatentScale),
	}, release, nil
}

// decode runs the VAE decoder on a latent batch.
func (m *model) decode(ctx context.Context, lat sdk.Tensor, device string) ([]image.Image, error) {
	man := m.Manifest
	if len(lat.Shape) != 4 || lat.Shape[1] != int64(man.LatentChannels) {
		return nil, fmt.Errorf("input \"latent\": shape %v does not fit model %q, whose VAE decoder takes [batch, %d, height, width]", lat.Shape, m.name, man.LatentChannels)
	}
	if int64(len(lat.Data)) != lat.Shape[0]*lat.Shape[1]*lat.Shape[2]*lat.Shape[3] {
		return nil, fmt.Errorf("input \"latent\": %d values for shape %v", len(lat.Data), lat.Shape)
	}
	// The UNet works on latents scaled to unit variance; the decoder wants
	// them back in the VAE's own scale.
	inv := float32(1 / man.LatentScale)
	z := make([]float32, len(lat.Data))
	for i, v := range lat.Data {
		z[i] = v * inv
	}
	s, release, err := m.session(sdmodel.VAEDecoderFile, device)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := s.RunContext(ctx, map[string]ort.Tensor{sdmodel.InLatent: ort.F32(z, lat.Shape...)})
	if err != nil {
		return nil, err
	}
	img := out[sdmodel.OutImage]
	imgs, err := decodedImages(img.Float32(), img.Shape)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path(), err)
	}
	return imgs, nil
}
