// Package face0 holds the math of the Face0 method (Valevski et al. 2023,
// "Face0: Instantaneously Conditioning a Text-to-Image Model on a Face"),
// independent of any model runtime: the three-way classifier-free guidance
// and how to batch it, the construction of the conditioning contexts, face
// embedding arithmetic (interpolation, averaging, noise, random embeddings
// from a Gaussian mixture and fitting that mixture), and seeded Gaussian
// noise that reproduces each sample of a batch on its own.
//
// See README.md for the formulas and the reasoning behind the choices.
package face0

import (
	"errors"
	"fmt"
)

// Guidance holds the weights of Face0's guidance (paper, Sec. 2.2):
//
//	ε̂ = w · ε_cond + (1 - w) · ε(z_t)
//	ε_cond = c · ε(z_t, d, f) + (1 - c) · ( a · ε(z_t, f) + (1 - a) · ε(z_t, d) )
//
// where z_t is the noisy latent, d the text prompt, f the face embedding,
// ε(z_t) the unconditioned prediction, ε(z_t, d) text only, ε(z_t, f) face
// only and ε(z_t, d, f) text and face. w is the classifier-free guidance
// weight, c the relative weight of the combined condition, and a the
// relative weight of face-only against text-only in the remainder.
//
// The paper uses w = 7.5; c = 1 (a irrelevant) for photo-realism, which is
// plain CFG on the combined condition; 0.4 <= c <= 0.7 with a = 0 for
// artistic styles; c = 1.4, a = 1 (a negative weight on the face-only term)
// for very non-photo-realistic images.
type Guidance struct {
	W float64 // CFG weight w
	C float64 // weight c of the text+face prediction
	A float64 // share a of face-only in the remaining 1-c
}

// DefaultGuidance is the paper's photo-realistic setting: w = 7.5, c = 1,
// a = 0.
func DefaultGuidance() Guidance { return Guidance{W: 7.5, C: 1, A: 0} }

// Branch is one of the four conditionings the UNet can be evaluated with.
type Branch int

// The branches, in the order they are batched.
const (
	Uncond   Branch = iota // ε(z_t): empty prompt, face tokens zeroed
	Text                   // ε(z_t, d): prompt, face tokens zeroed
	Face                   // ε(z_t, f): empty prompt, face tokens
	TextFace               // ε(z_t, d, f): prompt, face tokens
)

var branchNames = [...]string{"uncond", "text", "face", "text+face"}

func (b Branch) String() string {
	if b < Uncond || b > TextFace {
		return fmt.Sprintf("Branch(%d)", int(b))
	}
	return branchNames[b]
}

// Coefficients expands the guidance into one weight per branch, indexed by
// Branch, so that ε̂ = Σ_k coef[k] · ε_k:
//
//	coef[Uncond]   = 1 - w
//	coef[Text]     = w (1-c)(1-a)
//	coef[Face]     = w (1-c) a
//	coef[TextFace] = w c
//
// They always sum to 1 (an affine combination), whatever w, c and a.
func (g Guidance) Coefficients() [4]float64 {
	return [4]float64{
		Uncond:   1 - g.W,
		Text:     g.W * (1 - g.C) * (1 - g.A),
		Face:     g.W * (1 - g.C) * g.A,
		TextFace: g.W * g.C,
	}
}

// Plan says which branches one guided prediction needs and how they are
// laid out in a single batched UNet call: branch Branches[k] of latent b is
// batch row k·B + b (branch-major, like diffusers' torch.cat([uncond,
// cond])), for B latents. Coeffs[k] is the weight of Branches[k].
type Plan struct {
	Branches []Branch
	Coeffs   []float64
}

// Plan leaves out every branch whose coefficient is exactly zero (c = 1
// drops text-only and face-only; a = 0 drops face-only; w = 1 drops the
// unconditioned branch), so the UNet batch is as small as the guidance
// allows. Branch order is always Uncond, Text, Face, TextFace.
func (g Guidance) Plan() Plan {
	var p Plan
	for b, c := range g.Coefficients() {
		if c != 0 {
			p.Branches = append(p.Branches, Branch(b))
			p.Coeffs = append(p.Coeffs, c)
		}
	}
	return p
}

// Len is the number of branches, the UNet batch multiplier.
func (p Plan) Len() int { return len(p.Branches) }

// Has reports whether the plan evaluates branch b.
func (p Plan) Has(b Branch) bool {
	for _, x := range p.Branches {
		if x == b {
			return true
		}
	}
	return false
}

// NeedsFace reports whether any branch uses the face tokens.
func (p Plan) NeedsFace() bool { return p.Has(Face) || p.Has(TextFace) }

// Replicate writes the UNet's latent input: len(Branches) copies of the
// latent batch x, each multiplied by scale (the sampler's input scale).
// dst is reused when it has the capacity.
func (p Plan) Replicate(dst, x []float32, scale float32) []float32 {
	n := len(x)
	dst = grow(dst, n*p.Len())
	for k := range p.Branches {
		row := dst[k*n : (k+1)*n]
		for j, v := range x {
			row[j] = v * scale
		}
	}
	return dst
}

// Combine writes the guided prediction into dst from the UNet output out,
// which holds len(Branches) blocks of len(dst) values in plan order:
// dst[j] = Σ_k Coeffs[k] · out[k·len(dst) + j], summed in float64.
func (p Plan) Combine(dst, out []float32) error {
	n := len(dst)
	if len(out) != n*p.Len() {
		return fmt.Errorf("face0: UNet output has %d values, want %d branches × %d", len(out), p.Len(), n)
	}
	switch p.Len() {
	case 1:
		c := p.Coeffs[0]
		for j := range dst {
			dst[j] = float32(c * float64(out[j]))
		}
	case 2:
		c0, c1 := p.Coeffs[0], p.Coeffs[1]
		o0, o1 := out[:n], out[n:2*n]
		for j := range dst {
			dst[j] = float32(c0*float64(o0[j]) + c1*float64(o1[j]))
		}
	default:
		for j := range dst {
			s := 0.0
			for k, c := range p.Coeffs {
				s += c * float64(out[k*n+j])
			}
			dst[j] = float32(s)
		}
	}
	return nil
}

// ContextShape is the shape of one conditioning context: Tokens rows of
// Dim values, the last FaceTokens rows of which carry the face.
type ContextShape struct {
	Tokens     int // CLIP context length, 77
	Dim        int // embedding width, 768 for SD 1.x
	FaceTokens int // rows overridden by the projected face, 3
}

// SD15Context is Stable Diffusion 1.x's context: 77 tokens of 768, the
// last three (tokens 75-77, indices 74-76) carrying the face.
var SD15Context = ContextShape{Tokens: 77, Dim: 768, FaceTokens: 3}

// Conditioning holds the encoded inputs the contexts are built from. Each
// of Prompt, Empty and Negative is [1, Tokens, Dim] (shared by the batch)
// or [B, Tokens, Dim]; Face is [1 or B, FaceTokens, Dim].
type Conditioning struct {
	// Prompt is the text encoder's output for the prompt d.
	Prompt []float32
	// Empty is the text encoder's output for the empty prompt "", the
	// text part of the face-only branch and, without Negative, of the
	// unconditioned branch.
	Empty []float32
	// Negative, when set, replaces Empty in the unconditioned branch only
	// (a negative prompt, as in standard CFG); face-only keeps Empty.
	Negative []float32
	// Face is the projection MLP's output, the three face tokens.
	Face []float32
}

// Contexts writes the batched UNet context for the plan, [len(Branches)·B,
// Tokens, Dim] in the plan's branch-major order, and returns it (dst is
// reused when it has the capacity). Following the paper (Sec. 2.2 and 2.3),
// the projected face overrides the last FaceTokens tokens of the text
// encoder's output; training zeroes that projection with probability 0.1
// for classifier-free guidance, so the branches without the face carry
// zeros there, not the text encoder's values:
//
//	Uncond:   Empty (or Negative) with the last FaceTokens rows zeroed
//	Text:     Prompt with the last FaceTokens rows zeroed
//	Face:     Empty with the last FaceTokens rows = Face
//	TextFace: Prompt with the last FaceTokens rows = Face
//
// The prompt's own tokens at those positions are lost, so a prompt should
// fit in Tokens - FaceTokens positions (SOT, at most 72 words' tokens, EOT
// for SD: 74 rows).
func (p Plan) Contexts(dst []float32, shape ContextShape, batch int, c Conditioning) ([]float32, error) {
	if shape.Tokens < 1 || shape.Dim < 1 || shape.FaceTokens < 0 || shape.FaceTokens > shape.Tokens {
		return nil, fmt.Errorf("face0: bad context shape %+v", shape)
	}
	if batch < 1 {
		return nil, fmt.Errorf("face0: batch %d", batch)
	}
	ctxLen := shape.Tokens * shape.Dim
	faceLen := shape.FaceTokens * shape.Dim
	pick := func(name string, t []float32, per int, need bool) (func(b int) []float32, error) {
		switch {
		case !need:
			return nil, nil
		case len(t) == per:
			return func(int) []float32 { return t }, nil
		case len(t) == per*batch:
			return func(b int) []float32 { return t[b*per : (b+1)*per] }, nil
		case t == nil:
			return nil, fmt.Errorf("face0: the plan needs %s, which is missing", name)
		}
		return nil, fmt.Errorf("face0: %s has %d values, want %d or %d×%d", name, len(t), per, batch, per)
	}
	needText := p.Has(Text) || p.Has(TextFace)
	needEmpty := p.Has(Face) || (p.Has(Uncond) && c.Negative == nil)
	prompt, err := pick("Prompt", c.Prompt, ctxLen, needText)
	if err != nil {
		return nil, err
	}
	empty, err := pick("Empty", c.Empty, ctxLen, needEmpty)
	if err != nil {
		return nil, err
	}
	negative, err := pick("Negative", c.Negative, ctxLen, c.Negative != nil && p.Has(Uncond))
	if err != nil {
		return nil, err
	}
	face, err := pick("Face", c.Face, faceLen, p.NeedsFace())
	if err != nil {
		return nil, err
	}
	if negative == nil {
		negative = empty
	}
	dst = grow(dst, p.Len()*batch*ctxLen)
	keep := ctxLen - faceLen // values copied from the text encoder
	for k, br := range p.Branches {
		for b := range batch {
			row := dst[(k*batch+b)*ctxLen : (k*batch+b+1)*ctxLen]
			var text []float32
			switch br {
			case Uncond:
				text = negative(b)
			case Text, TextFace:
				text = prompt(b)
			case Face:
				text = empty(b)
			default:
				return nil, errors.New("face0: unknown branch")
			}
			copy(row[:keep], text[:keep])
			if br == Face || br == TextFace {
				copy(row[keep:], face(b))
			} else {
				clear(row[keep:])
			}
		}
	}
	return dst, nil
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
