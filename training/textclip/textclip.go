// Package textclip pretrains a small CLIP text encoder contrastively on a
// captioned image dataset: the stand-in, for a model trained from scratch,
// of the pretrained CLIP text encoder that Stable Diffusion (and Face0)
// keeps frozen.
//
// Why: a frozen text encoder with random weights does carry its caption
// (each word moves its own token state), but nothing in it says which
// colour word belongs to the background and which to the hat; a small
// denoiser trained on such contexts learnt to ignore them (the shipped
// tiny model's text alignment stayed at chance after 12,000 steps). CLIP's
// own answer is contrastive pretraining, and the dataset's images are the
// other half of the pairs: the encoder learns to put what the caption says
// about the picture where a linear read finds it.
//
// The objective is CLIP's symmetric InfoNCE between
//
//	text  = normalize(text_projection(mean of last_hidden_state over the end-token positions))
//	image = normalize(MLP(image features))     (the prepared latent, flattened)
//
// with a fixed temperature. Pooling over every end-token position (the end
// token and the padding, which SD pads with the same id) rather than over
// the first one alone trains all the positions the denoiser's
// cross-attention can read, not one. Captions repeated inside a batch are
// positives of each other (soft targets), so a duplicate is never pushed
// away from its own image. Only the text encoder's weights are kept; the
// projection heads and the image tower are thrown away.
package textclip

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/textenc"
)

// Options configure Train. Zero fields take the defaults in brackets.
type Options struct {
	Steps       int     // optimizer steps [800]
	Batch       int     // pairs per step, the negatives of each other [128]
	LR          float64 // Adam learning rate [2e-3]
	Dim         int     // joint embedding width [64]
	ImageHidden int     // hidden width of the image tower [256]
	Temperature float64 // logit temperature [0.07]
	Seed        uint64  // initial weights and batch order [1]
	// HeldOut is the fraction of pairs kept out of training to measure
	// retrieval on [0.1]; at least one batch of them is needed.
	HeldOut float64
	// Progress is called after each step; may be nil.
	Progress func(step, total int, loss float64)
}

// WithDefaults returns o with its zero fields set to the defaults.
func (o Options) WithDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Steps, 800)
	def(&o.Batch, 128)
	def(&o.Dim, 64)
	def(&o.ImageHidden, 256)
	if o.LR <= 0 {
		o.LR = 2e-3
	}
	if o.Temperature <= 0 {
		o.Temperature = 0.07
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.HeldOut <= 0 {
		o.HeldOut = 0.1
	}
	if o.Progress == nil {
		o.Progress = func(int, int, float64) {}
	}
	return o
}

// Pair is one training example: a caption's token ids (the encoder's full
// context length, padded with the end token as SD does) and its image's
// features.
type Pair struct {
	IDs   []int32
	Image []float32
}

// Result is a trained encoder and how well it retrieves held-out pairs.
type Result struct {
	Options   Options       // as run, defaults filled in
	Weights   model.Weights // the text encoder's (transformers names)
	FinalLoss float64       // mean training loss over the last 50 steps
	// Retrieval: held-out, in batches of Options.Batch, the fraction of
	// captions whose best-scoring image (among the batch) has the same
	// caption, before and after training, and what chance gives.
	RetrievalBefore, RetrievalAfter, RetrievalChance float64
	HeldOutPairs                                     int
}

// Head weight names (thrown away after training).
const (
	textProj = "text_projection"
	imgFC1   = "image.fc1"
	imgFC2   = "image.fc2"
)

func headSpecs(D, F, H, E int) []model.ParamSpec {
	lin := func(name string, in, out int, bias bool) []model.ParamSpec {
		s := []model.ParamSpec{{Name: name + ".weight", Shape: []int{out, in}, Init: model.InitLinear, FanIn: in}}
		if bias {
			s = append(s, model.ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: model.InitZeros})
		}
		return s
	}
	return slices.Concat(lin(textProj, D, E, false), lin(imgFC1, F, H, true), lin(imgFC2, H, E, false))
}

// Train pretrains the text encoder c from init (nil: textenc.NewWeights
// with o.Seed) on pairs, on backend be. Every pair must have
// c.MaxPositionEmbeddings ids and the same image feature length.
func Train(ctx context.Context, be backends.Backend, c textenc.Config, init model.Weights, pairs []Pair, o Options) (*Result, error) {
	o = o.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("textclip: no caption-image pairs")
	}
	L, F := c.MaxPositionEmbeddings, len(pairs[0].Image)
	for i, p := range pairs {
		if len(p.IDs) != L {
			return nil, fmt.Errorf("textclip: pair %d has %d token ids, want the context length %d", i, len(p.IDs), L)
		}
		if len(p.Image) != F || F == 0 {
			return nil, fmt.Errorf("textclip: pair %d has %d image features, pair 0 has %d", i, len(p.Image), F)
		}
		for _, id := range p.IDs {
			if id < 0 || int(id) >= c.VocabSize {
				return nil, fmt.Errorf("textclip: pair %d has token id %d outside the vocabulary [0, %d)", i, id, c.VocabSize)
			}
		}
	}
	B := o.Batch
	nHeld := int(math.Round(o.HeldOut * float64(len(pairs))))
	nHeld -= nHeld % B
	if nHeld < B || len(pairs)-nHeld < B {
		return nil, fmt.Errorf("textclip: %d pairs are too few for a batch of %d held out and at least one to train on; lower the batch", len(pairs), B)
	}
	// A fixed shuffle splits train and held-out pairs.
	rng := rand.New(rand.NewPCG(o.Seed, 0x7e47c11b))
	order := rng.Perm(len(pairs))
	held, train := order[:nHeld], order[nHeld:]

	if init == nil {
		init = textenc.NewWeights(c, o.Seed)
	} else if err := textenc.Check(c, init); err != nil {
		return nil, err
	}
	// Only the rows of the tokens the captions use can change, so the graph
	// trains a compact table of those rows (ids remapped) and they are
	// written back at the end: CLIP's 49,408-row table would otherwise
	// cost a dense gradient and Adam update per step for ~100 live rows.
	full := init[tokenEmbedding]
	D := c.HiddenSize
	used, pairs := compactVocab(pairs)
	// Positions past the longest caption hold only padding: training runs
	// on the first Lt positions (the longest caption's end token plus
	// padSlack), then every later position gets position Lt−1's embedding,
	// so a padding state there is computed from the same inputs as at a
	// trained position (a 77-long run costs 1.7× more per step for
	// nothing the denoiser needs).
	Lt := min(L, longestEnd(pairs)+1+padSlack)
	for i := range pairs {
		pairs[i].IDs = pairs[i].IDs[:Lt]
	}
	cc := c
	cc.VocabSize = len(used)
	encSpecs := textenc.Specs(cc)
	specs := slices.Concat(encSpecs, headSpecs(c.HiddenSize, F, o.ImageHidden, o.Dim))
	w := model.NewWeights(specs[len(encSpecs):], o.Seed)
	for k, v := range init {
		w[k] = v
	}
	table := make([]float32, 0, len(used)*D)
	for _, id := range used {
		table = append(table, full.Data[int(id)*D:(int(id)+1)*D]...)
	}
	w[tokenEmbedding] = &model.Tensor{Shape: []int{len(used), D}, Data: table}
	P := len(specs)
	params := make([]*tensors.Tensor, P)
	adamM := make([]*tensors.Tensor, P)
	adamV := make([]*tensors.Tensor, P)
	for i, s := range specs {
		params[i] = tensors.FromFlatDataAndDimensions(slices.Clone(w[s.Name].Data), s.Shape...)
		adamM[i] = tensors.FromFlatDataAndDimensions(make([]float32, s.Size()), s.Shape...)
		adamV[i] = tensors.FromFlatDataAndDimensions(make([]float32, s.Size()), s.Shape...)
	}

	invT := 1 / o.Temperature
	lossOf := func(p []*Node, ids, pool, img, target *Node) (loss, logits *Node) {
		look := model.LookupFrom(specs, p)
		hidden, _ := textenc.Forward(cc, look, ids)               // [B,L,D]
		pooled := ReduceSum(Mul(hidden, InsertAxes(pool, -1)), 1) // [B,D]
		t := layers.Linear(pooled, look(textProj+".weight"), nil) // [B,E]
		h := layers.GELU(layers.Linear(img, look(imgFC1+".weight"), look(imgFC1+".bias")))
		v := layers.Linear(h, look(imgFC2+".weight"), nil)
		t, v = l2norm(t), l2norm(v)
		logits = MulScalar(DotGeneral(t, []int{1}, nil, v, []int{1}, nil), invT) // [B,B] text × image
		lt := ReduceAllMean(ReduceSum(Mul(target, LogSoftmax(logits, 1)), 1))
		li := ReduceAllMean(ReduceSum(Mul(target, LogSoftmax(Transpose(logits, 0, 1), 1)), 1))
		return Neg(MulScalar(Add(lt, li), 0.5)), logits
	}
	// step: params(P) m(P) v(P) [lr/(1-β₁ᵗ), 1/√(1-β₂ᵗ)] ids pool img target → loss, p', m', v'
	const b1, b2, eps = 0.9, 0.999, 1e-8
	step, err := NewExec(be, func(in []*Node) []*Node {
		p, m, v := in[:P], in[P:2*P], in[2*P:3*P]
		stepSize, invBC2 := in[3*P], in[3*P+1]
		loss, _ := lossOf(p, in[3*P+2], in[3*P+3], in[3*P+4], in[3*P+5])
		g := Gradient(loss, p...)
		model.Release(loss.Graph())
		out := []*Node{loss}
		var np, nm, nv []*Node
		for i := range p {
			mi := Add(MulScalar(m[i], b1), MulScalar(g[i], 1-b1))
			vi := Add(MulScalar(v[i], b2), MulScalar(Square(g[i]), 1-b2))
			pi := Sub(p[i], Mul(Div(mi, AddScalar(Mul(Sqrt(vi), invBC2), eps)), stepSize))
			np, nm, nv = append(np, pi), append(nm, mi), append(nv, vi)
		}
		return slices.Concat(out, np, nm, nv)
	})
	if err != nil {
		return nil, fmt.Errorf("textclip: %w", err)
	}
	defer step.Finalize()
	// eval: params(P) ids pool img target → logits
	eval, err := NewExec(be, func(in []*Node) *Node {
		_, logits := lossOf(in[:P], in[P], in[P+1], in[P+2], in[P+3])
		model.Release(logits.Graph())
		return logits
	})
	if err != nil {
		return nil, fmt.Errorf("textclip: %w", err)
	}
	defer eval.Finalize()

	retrieval := func() (acc, chance float64, err error) {
		var hit, chanceSum float64
		for s := 0; s < len(held); s += B {
			idx := held[s : s+B]
			in := batchTensors(pairs, idx, F)
			out, err := eval.Exec(slices.Concat(anys(params), in)...)
			if err != nil {
				return 0, 0, fmt.Errorf("textclip: %w", err)
			}
			logits, err := tensors.CopyFlatData[float32](out[0])
			out[0].FinalizeAll()
			if err != nil {
				return 0, 0, err
			}
			for i := range idx {
				row := logits[i*B : (i+1)*B]
				best := 0
				same := 0
				for j := range row {
					if row[j] > row[best] {
						best = j
					}
					if slices.Equal(pairs[idx[i]].IDs, pairs[idx[j]].IDs) {
						same++
					}
				}
				if slices.Equal(pairs[idx[i]].IDs, pairs[idx[best]].IDs) {
					hit++
				}
				chanceSum += float64(same) / float64(B)
			}
		}
		return hit / float64(len(held)), chanceSum / float64(len(held)), nil
	}
	res := &Result{Options: o, HeldOutPairs: len(held)}
	if res.RetrievalBefore, res.RetrievalChance, err = retrieval(); err != nil {
		return nil, err
	}

	var recent []float64
	perm := slices.Clone(train)
	pos := len(perm)
	for t := 1; t <= o.Steps; t++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if pos+B > len(perm) {
			rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			pos = 0
		}
		idx := perm[pos : pos+B]
		pos += B
		stepSize := o.LR / (1 - math.Pow(b1, float64(t)))
		invBC2 := 1 / math.Sqrt(1-math.Pow(b2, float64(t)))
		args := slices.Concat(anys(params), anys(adamM), anys(adamV),
			[]any{float32(stepSize), float32(invBC2)}, batchTensors(pairs, idx, F))
		out, err := step.Exec(args...)
		if err != nil {
			return nil, fmt.Errorf("textclip: step %d: %w", t, err)
		}
		loss, err := tensors.CopyFlatData[float32](out[0])
		out[0].FinalizeAll()
		if err != nil {
			return nil, err
		}
		if math.IsNaN(float64(loss[0])) || math.IsInf(float64(loss[0]), 0) {
			return nil, fmt.Errorf("textclip: the loss is %g at step %d; lower the learning rate", loss[0], t)
		}
		for i := range P {
			params[i].FinalizeAll()
			adamM[i].FinalizeAll()
			adamV[i].FinalizeAll()
			params[i], adamM[i], adamV[i] = out[1+i], out[1+P+i], out[1+2*P+i]
		}
		recent = append(recent, float64(loss[0]))
		if len(recent) > 50 {
			recent = recent[1:]
		}
		o.Progress(t, o.Steps, float64(loss[0]))
	}
	for _, l := range recent {
		res.FinalLoss += l / float64(len(recent))
	}
	if res.RetrievalAfter, _, err = retrieval(); err != nil {
		return nil, err
	}
	res.Weights = model.Weights{}
	for i, s := range encSpecs {
		data, err := tensors.CopyFlatData[float32](params[i])
		if err != nil {
			return nil, err
		}
		res.Weights[s.Name] = &model.Tensor{Shape: slices.Clone(s.Shape), Data: data}
	}
	compact := res.Weights[tokenEmbedding].Data
	out := &model.Tensor{Shape: slices.Clone(full.Shape), Data: slices.Clone(full.Data)}
	for k, id := range used {
		copy(out.Data[int(id)*D:(int(id)+1)*D], compact[k*D:(k+1)*D])
	}
	res.Weights[tokenEmbedding] = out
	posTab := res.Weights[positionEmbedding].Data
	for p := Lt; p < L; p++ {
		copy(posTab[p*D:(p+1)*D], posTab[(Lt-1)*D:Lt*D])
	}
	return res, nil
}

// padSlack is how many padding positions past the longest caption's end
// token pretraining keeps.
const padSlack = 8

const positionEmbedding = textenc.Prefix + "embeddings.position_embedding.weight"

// longestEnd is the largest end-token position over pairs.
func longestEnd(pairs []Pair) int {
	m := 0
	for _, p := range pairs {
		m = max(m, endPos(p.IDs))
	}
	return m
}

// endPos is the first position of the largest id (CLIP's end token).
func endPos(ids []int32) int {
	end := 0
	for j, id := range ids {
		if id > ids[end] {
			end = j
		}
	}
	return end
}

const tokenEmbedding = textenc.Prefix + "embeddings.token_embedding.weight"

// compactVocab lists the distinct ids of pairs in increasing order and
// returns pairs with every id replaced by its index in that list. The order
// is kept, so the end token (the largest id) stays the largest.
func compactVocab(pairs []Pair) (used []int32, out []Pair) {
	seen := map[int32]bool{}
	for _, p := range pairs {
		for _, id := range p.IDs {
			seen[id] = true
		}
	}
	for id := range seen {
		used = append(used, id)
	}
	slices.Sort(used)
	index := make(map[int32]int32, len(used))
	for k, id := range used {
		index[id] = int32(k)
	}
	out = make([]Pair, len(pairs))
	for i, p := range pairs {
		ids := make([]int32, len(p.IDs))
		for j, id := range p.IDs {
			ids[j] = index[id]
		}
		out[i] = Pair{IDs: ids, Image: p.Image}
	}
	return used, out
}

func l2norm(x *Node) *Node {
	return Div(x, Sqrt(AddScalar(ReduceAndKeep(Square(x), ReduceSum, -1), 1e-12)))
}

func anys(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// batchTensors builds ids [B,L] int32, the pooling weights [B,L] (1/n over
// the n positions from the first end token on, the end token being the
// largest id as in CLIP), the image features [B,F] and the soft targets
// [B,B] (uniform over the batch's pairs with the same caption).
func batchTensors(pairs []Pair, idx []int, F int) []any {
	B, L := len(idx), len(pairs[idx[0]].IDs)
	ids := make([]int32, 0, B*L)
	pool := make([]float32, B*L)
	img := make([]float32, 0, B*F)
	target := make([]float32, B*B)
	for b, i := range idx {
		row := pairs[i].IDs
		ids = append(ids, row...)
		end := endPos(row)
		for j := end; j < L; j++ {
			pool[b*L+j] = 1 / float32(L-end)
		}
		img = append(img, pairs[i].Image...)
		n := 0
		for _, k := range idx {
			if slices.Equal(row, pairs[k].IDs) {
				n++
			}
		}
		for j, k := range idx {
			if slices.Equal(row, pairs[k].IDs) {
				target[b*B+j] = 1 / float32(n)
			}
		}
	}
	return []any{
		tensors.FromFlatDataAndDimensions(ids, B, L),
		tensors.FromFlatDataAndDimensions(pool, B, L),
		tensors.FromFlatDataAndDimensions(img, B, F),
		tensors.FromFlatDataAndDimensions(target, B, B),
	}
}
