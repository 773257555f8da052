package training

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // the pure-Go backend, GOMLX_BACKEND=go
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
)

// Backend is the process's GoMLX backend, chosen by $GOMLX_BACKEND as
// GoMLX does, except that the pure-Go backend ("go", also the default here)
// runs its ops sequentially: in GoMLX v0.26.0 its parallel op scheduling
// deadlocks on small machines (op tasks hold every worker while waiting for
// one for their own matmul split). Matmuls are still parallel.
var Backend = sync.OnceValues(func() (b backends.Backend, err error) {
	c := os.Getenv(backends.ConfigEnvVar)
	if c == "" || c == "go" {
		c = "go:ops_sequential"
	}
	if err := backendProblem(c, backends.List()); err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	// GoMLX panics on some set-up failures; they are the user's machine's,
	// not bugs, so they become errors with the way out.
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("training: GoMLX backend %q: %v (see %s)", c, r, TrainingOnGPU)
		}
	}()
	b, err = backends.NewWithConfig(c)
	if err != nil {
		return nil, fmt.Errorf("training: GoMLX backend %q: %w (see %s)", c, err, TrainingOnGPU)
	}
	return b, nil
})

// BackendConv is the convolution build that suits the process's backend:
// XLA's native ConvGeneral when $GOMLX_BACKEND selects XLA, im2col (whose
// gradient the pure-Go backend can compute) otherwise.
func BackendConv() sd.ConvImpl {
	if strings.HasPrefix(os.Getenv(backends.ConfigEnvVar), "xla") {
		return sd.ConvNative
	}
	return sd.ConvIm2col
}

// Trainer runs the Face0 objective with AdamW and EMA on one backend. It
// is not safe for concurrent use.
type Trainer struct {
	cfg     Config
	data    Dataset
	backend backends.Backend
	alphas  []float64 // ᾱ_t
	empty   []float32 // the empty prompt's context (text drop only)

	specs     []model.ParamSpec
	trainable []int // indices into specs

	params       []*tensors.Tensor // every weight, in specs order
	m, v, ema    []*tensors.Tensor // per trainable weight (ema empty without EMA)
	state        State
	fused        *Exec // loss, grads and update in one graph (GradAccum = 1)
	accum, apply *Exec // the same split in two (GradAccum > 1)
	eval         *Exec

	perm      []int // the permutation of permEpoch, cached
	permEpoch int
}

// State is the progress a checkpoint records besides the tensors: with the
// config's seed, it determines every later batch and random draw.
type State struct {
	Step   int `json:"step"`   // optimizer steps done
	Epoch  int `json:"epoch"`  // current pass over the data
	Cursor int `json:"cursor"` // next position in the epoch's permutation
}

// StepResult reports one optimizer step.
type StepResult struct {
	Step     int     // steps done, this one included
	Loss     float64 // mean loss over the step's micro-batches
	GradNorm float64 // global gradient norm before clipping
	// Checkpoint is the folder written after this step, if any.
	Checkpoint string
}

// New starts a run from init (nil: the config's seeded random weights).
// New takes init: each tensor's data is released once it is copied in (a
// full-size UNet is not held twice while the trainer starts); pass a Clone
// to keep using it.
func New(cfg Config, data Dataset, init model.Weights) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if data == nil || data.Len() == 0 {
		return nil, errors.New("training: empty dataset")
	}
	specs := cfg.Specs()
	if init == nil {
		init = model.NewWeights(specs, cfg.Seed)
	} else if err := model.Check(init, specs); err != nil {
		return nil, fmt.Errorf("training: initial %w", err)
	}
	t, err := newTrainer(cfg, data, specs)
	if err != nil {
		return nil, err
	}
	ema := map[string]bool{}
	if cfg.EMADecay > 0 {
		for _, i := range t.trainable {
			ema[specs[i].Name] = true
		}
	}
	t.params = make([]*tensors.Tensor, len(specs))
	for i, s := range specs {
		t.params[i] = tensors.FromFlatDataAndDimensions(init[s.Name].Data, s.Shape...) // copies
		if ema[s.Name] {
			t.ema = append(t.ema, tensors.FromFlatDataAndDimensions(init[s.Name].Data, s.Shape...))
		}
		init[s.Name].Data = nil
	}
	for _, i := range t.trainable {
		s := specs[i]
		t.m = append(t.m, zeros(s.Shape))
		t.v = append(t.v, zeros(s.Shape))
	}
	return t, nil
}

// zeros is a float32 tensor of zeros, allocated once (tensors.FromShape's
// storage is zeroed).
func zeros(shape []int) *tensors.Tensor {
	return tensors.FromShape(shapes.Make(dtypes.Float32, shape...))
}

// Close frees the trainer's tensors (weights, optimizer state, EMA): a
// full-size run's gigabytes, released before its export. The trainer
// cannot be used afterwards.
func (t *Trainer) Close() {
	for _, ts := range [][]*tensors.Tensor{t.params, t.m, t.v, t.ema} {
		for _, x := range ts {
			if x != nil {
				x.FinalizeAll()
			}
		}
	}
	t.params, t.m, t.v, t.ema = nil, nil, nil, nil
}

// donate hands x's buffer to the graph that replaces it (an updated
// weight, moment or EMA): the backend may write the result into it, so a
// step does not hold every state tensor twice. x is invalid afterwards.
// Should the backend refuse, x is passed as it is (and copied).
func (t *Trainer) donate(x *tensors.Tensor) any {
	d, err := DonateTensorBuffer(x, t.backend, 0)
	if err != nil {
		return x
	}
	x.FinalizeAll() // its local copy, if any; the buffer now belongs to the graph
	return d
}

func (t *Trainer) donateAll(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, x := range ts {
		out[i] = t.donate(x)
	}
	return out
}

func newTrainer(cfg Config, data Dataset, specs []model.ParamSpec) (*Trainer, error) {
	s, err := cfg.schedule()
	if err != nil {
		return nil, err
	}
	be, err := Backend()
	if err != nil {
		return nil, err
	}
	empty, err := emptyContext(cfg, data)
	if err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, data: data, backend: be, alphas: s.AlphasCumprod, empty: empty, specs: specs}
	for i, sp := range specs {
		if !cfg.AdapterOnly || strings.HasPrefix(sp.Name, model.ProjectionPrefix) {
			t.trainable = append(t.trainable, i)
		}
	}
	if err := t.compile(); err != nil {
		return nil, err
	}
	return t, nil
}

// toTensors copies w's tensors of specs (all, or those at idx) into GoMLX
// tensors, releasing each of w's as it goes (w is spent afterwards): a
// resumed full-size run holds each state tensor once.
func toTensors(w model.Weights, specs []model.ParamSpec, idx []int) []*tensors.Tensor {
	if idx == nil {
		idx = make([]int, len(specs))
		for i := range idx {
			idx[i] = i
		}
	}
	out := make([]*tensors.Tensor, len(idx))
	for k, i := range idx {
		s := specs[i]
		out[k] = tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...) // copies
		w[s.Name].Data = nil
	}
	return out
}

// compile builds the graph functions (GoMLX compiles them per input shape
// on first use).
func (t *Trainer) compile() error {
	P, K := len(t.specs), len(t.trainable)
	E := 0
	if t.cfg.EMADecay > 0 {
		E = K
	}
	cfg := t.cfg
	pick := func(all []*Node) []*Node {
		out := make([]*Node, K)
		for k, i := range t.trainable {
			out[k] = all[i]
		}
		return out
	}
	var err error
	// fused: params(P) m(K) v(K) ema(E) hyper(5) batch(8) → loss, norm, p'(K) m'(K) v'(K) ema'(E)
	t.fused, err = NewExec(t.backend, func(in []*Node) []*Node {
		params := in[:P]
		m, v, e := in[P:P+K], in[P+K:P+2*K], in[P+2*K:P+2*K+E]
		h := in[P+2*K+E : P+2*K+E+hyperInputs]
		b := in[P+2*K+E+hyperInputs:]
		loss := lossGraph(cfg, model.LookupFrom(t.specs, params), b)
		g := Gradient(loss, pick(params)...)
		model.Release(loss.Graph())
		norm, np, nm, nv, ne := adamW(cfg, pick(params), m, v, e, g, h)
		return slices.Concat([]*Node{loss, norm}, np, nm, nv, ne)
	})
	if err != nil {
		return err
	}
	// accum: params(P) acc(K) batch(8) → loss, acc+grad (K)
	t.accum, err = NewExec(t.backend, func(in []*Node) []*Node {
		params, acc, b := in[:P], in[P:P+K], in[P+K:]
		loss := lossGraph(cfg, model.LookupFrom(t.specs, params), b)
		g := Gradient(loss, pick(params)...)
		model.Release(loss.Graph())
		out := []*Node{loss}
		for k := range g {
			out = append(out, Add(acc[k], g[k]))
		}
		return out
	})
	if err != nil {
		return err
	}
	// apply: p(K) m(K) v(K) ema(E) grads(K) hyper(5) → norm, p' m' v' ema'
	t.apply, err = NewExec(t.backend, func(in []*Node) []*Node {
		p, m, v, e := in[:K], in[K:2*K], in[2*K:3*K], in[3*K:3*K+E]
		g, h := in[3*K+E:4*K+E], in[4*K+E:]
		norm, np, nm, nv, ne := adamW(cfg, p, m, v, e, g, h)
		return slices.Concat([]*Node{norm}, np, nm, nv, ne)
	})
	if err != nil {
		return err
	}
	// eval: params(P) batch(8) → loss
	t.eval, err = NewExec(t.backend, func(in []*Node) *Node {
		loss := lossGraph(cfg, model.LookupFrom(t.specs, in[:P]), in[P:])
		model.Release(loss.Graph())
		return loss
	})
	return err
}

// Config is the run's configuration.
func (t *Trainer) Config() Config { return t.cfg }

// State is the run's progress.
func (t *Trainer) State() State { return t.state }

// Backend names the GoMLX backend in use.
func (t *Trainer) Backend() string { return t.backend.Name() }

// hyper are the update's scalars for the step about to run (0-based s):
// bias corrections for step s+1 and the EMA decay ramp of diffusers'
// EMAModel, min(decay, (1+s)/(10+s)).
func (t *Trainer) hyper(gscale float64) []any {
	c := t.cfg
	n := float64(t.state.Step + 1)
	bc1 := 1 - math.Pow(c.Beta1, n)
	bc2 := 1 - math.Pow(c.Beta2, n)
	s := float64(t.state.Step)
	decay := min(c.EMADecay, (1+s)/(10+s))
	vals := []float64{gscale, c.LR / bc1, 1 / math.Sqrt(bc2), 1 - c.LR*c.WeightDecay, decay}
	out := make([]any, len(vals))
	for i, x := range vals {
		out[i] = tensors.FromScalar(float32(x))
	}
	return out
}

// nextIndices takes the next BatchSize example indices, moving to the next
// epoch's permutation at the end of one.
func (t *Trainer) nextIndices() []int {
	n := t.data.Len()
	idx := make([]int, 0, t.cfg.BatchSize)
	for len(idx) < t.cfg.BatchSize {
		if t.state.Cursor >= n {
			t.state.Epoch++
			t.state.Cursor = 0
		}
		if t.perm == nil || t.permEpoch != t.state.Epoch {
			t.perm, t.permEpoch = permutation(t.cfg.Seed, t.state.Epoch, n), t.state.Epoch
		}
		idx = append(idx, t.perm[t.state.Cursor])
		t.state.Cursor++
	}
	return idx
}

func (b *Batch) tensors(m model.Config) []any {
	B := b.Size
	C, S := m.LatentChannels, m.LatentSize
	return []any{
		tensors.FromFlatDataAndDimensions(b.Latents, B, C, S, S),
		tensors.FromFlatDataAndDimensions(b.Noise, B, C, S, S),
		tensors.FromFlatDataAndDimensions(b.Timesteps, B),
		tensors.FromFlatDataAndDimensions(b.SqrtAB, B),
		tensors.FromFlatDataAndDimensions(b.Sqrt1mAB, B),
		tensors.FromFlatDataAndDimensions(b.Context, B, m.ContextLength, m.TextWidth),
		tensors.FromFlatDataAndDimensions(b.Emb, B, m.EmbeddingDim),
		tensors.FromFlatDataAndDimensions(b.Keep, B),
	}
}

func anys(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, x := range ts {
		out[i] = x
	}
	return out
}

func finalize(vals ...any) {
	for _, v := range vals {
		if t, ok := v.(*tensors.Tensor); ok {
			t.FinalizeAll()
		}
	}
}

func replace(dst []*tensors.Tensor, src []*tensors.Tensor) {
	for i := range dst {
		dst[i].FinalizeAll()
		dst[i] = src[i]
	}
}

func scalar(x *tensors.Tensor) float64 {
	v := float64(tensors.ToScalar[float32](x))
	x.FinalizeAll()
	return v
}

// Step runs one optimizer step (GradAccum micro-batches) and writes a
// checkpoint when one is due.
func (t *Trainer) Step() (StepResult, error) {
	K := len(t.trainable)
	accum := t.cfg.GradAccum
	var lossSum, norm float64
	var np, nm, nv, ne []*tensors.Tensor
	if accum == 1 {
		b, err := makeBatch(t.cfg, t.alphas, t.data, t.nextIndices(), mix(t.cfg.Seed, uint64(t.state.Step), 0), t.empty)
		if err != nil {
			return StepResult{}, err
		}
		h, bt := t.hyper(1), b.tensors(t.cfg.Model)
		params := anys(t.params)
		for _, i := range t.trainable {
			params[i] = t.donate(t.params[i])
		}
		args := slices.Concat(params, t.donateAll(t.m), t.donateAll(t.v), t.donateAll(t.ema), h, bt)
		out, err := t.fused.Exec(args...)
		finalize(h...)
		finalize(bt...)
		if err != nil {
			return StepResult{}, fmt.Errorf("training: step %d: %w", t.state.Step+1, err)
		}
		lossSum, norm = scalar(out[0]), scalar(out[1])
		out = out[2:]
		np, nm, nv, ne = out[:K], out[K:2*K], out[2*K:3*K], out[3*K:]
	} else {
		acc := make([]*tensors.Tensor, K)
		for k, i := range t.trainable {
			s := t.specs[i]
			acc[k] = tensors.FromFlatDataAndDimensions(make([]float32, s.Size()), s.Shape...)
		}
		for micro := range accum {
			b, err := makeBatch(t.cfg, t.alphas, t.data, t.nextIndices(), mix(t.cfg.Seed, uint64(t.state.Step), uint64(micro)), t.empty)
			if err != nil {
				return StepResult{}, err
			}
			bt := b.tensors(t.cfg.Model)
			out, err := t.accum.Exec(slices.Concat(anys(t.params), t.donateAll(acc), bt)...)
			finalize(bt...)
			if err != nil {
				return StepResult{}, fmt.Errorf("training: step %d, micro-batch %d: %w", t.state.Step+1, micro, err)
			}
			lossSum += scalar(out[0])
			replace(acc, out[1:])
		}
		h := t.hyper(1 / float64(accum))
		out, err := t.apply.Exec(slices.Concat(t.donateAll(t.trainableParams()), t.donateAll(t.m), t.donateAll(t.v), t.donateAll(t.ema), t.donateAll(acc), h)...)
		finalize(h...)
		for _, a := range acc {
			a.FinalizeAll()
		}
		if err != nil {
			return StepResult{}, fmt.Errorf("training: step %d: %w", t.state.Step+1, err)
		}
		norm = scalar(out[0])
		out = out[1:]
		np, nm, nv, ne = out[:K], out[K:2*K], out[2*K:3*K], out[3*K:]
	}
	for k, i := range t.trainable {
		t.params[i].FinalizeAll()
		t.params[i] = np[k]
	}
	replace(t.m, nm)
	replace(t.v, nv)
	replace(t.ema, ne)
	t.state.Step++
	res := StepResult{Step: t.state.Step, Loss: lossSum / float64(accum), GradNorm: norm}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		return res, fmt.Errorf("training: step %d: loss is %v", res.Step, res.Loss)
	}
	if t.cfg.CheckpointDir != "" && t.cfg.CheckpointEvery > 0 && t.state.Step%t.cfg.CheckpointEvery == 0 {
		dir, err := t.SaveCheckpoint()
		if err != nil {
			return res, err
		}
		res.Checkpoint = dir
	}
	return res, nil
}

func (t *Trainer) trainableParams() []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(t.trainable))
	for k, i := range t.trainable {
		out[k] = t.params[i]
	}
	return out
}

// Run takes steps until the run has done total steps or ctx is done,
// calling each (if not nil) after every step.
func (t *Trainer) Run(ctx context.Context, total int, each func(StepResult)) error {
	for t.state.Step < total {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := t.Step()
		if err != nil {
			return err
		}
		if each != nil {
			each(r)
		}
	}
	return nil
}

// Batch draws a deterministic batch of the given examples with random draws
// from seed (independent of the run's streams), for evaluation.
func (t *Trainer) Batch(indices []int, seed uint64) (*Batch, error) {
	return makeBatch(t.cfg, t.alphas, t.data, indices, mix(seed, math.MaxUint64), t.empty)
}

// EvalLoss is the objective on b with the current weights (ema: the EMA
// weights instead).
func (t *Trainer) EvalLoss(b *Batch, ema bool) (float64, error) {
	params := anys(t.params)
	if ema && len(t.ema) > 0 {
		for k, i := range t.trainable {
			params[i] = t.ema[k]
		}
	}
	bt := b.tensors(t.cfg.Model)
	out, err := t.eval.Exec(append(params, bt...)...)
	finalize(bt...)
	if err != nil {
		return 0, err
	}
	return scalar(out[0]), nil
}

func toWeights(specs []model.ParamSpec, idx []int, ts []*tensors.Tensor, into model.Weights) model.Weights {
	if into == nil {
		into = make(model.Weights, len(ts))
	}
	for k, x := range ts {
		s := specs[k]
		if idx != nil {
			s = specs[idx[k]]
		}
		into[s.Name] = &model.Tensor{Shape: slices.Clone(s.Shape), Data: tensors.MustCopyFlatData[float32](x)}
		if x.IsOnDevice(0) {
			x.FinalizeLocal() // a device backend's host copy (a no-op for shared buffers)
		}
	}
	return into
}

// Weights copies out the current weights.
func (t *Trainer) Weights() model.Weights { return toWeights(t.specs, nil, t.params, nil) }

// EMAWeights copies out the EMA weights (frozen weights as they are); without
// an EMA, the current weights.
func (t *Trainer) EMAWeights() model.Weights {
	if len(t.ema) == 0 {
		return t.Weights()
	}
	// Frozen weights as they are, the trainable ones from the EMA: each
	// copied once.
	trainable := make(map[int]bool, len(t.trainable))
	for _, i := range t.trainable {
		trainable[i] = true
	}
	var frozen []int
	for i := range t.specs {
		if !trainable[i] {
			frozen = append(frozen, i)
		}
	}
	w := toWeights(t.specs, frozen, pick(t.params, frozen), nil)
	return toWeights(t.specs, t.trainable, t.ema, w)
}

func pick(ts []*tensors.Tensor, idx []int) []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(idx))
	for k, i := range idx {
		out[k] = ts[i]
	}
	return out
}
