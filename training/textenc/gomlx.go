package textenc

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's idiom: graph code reads as math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// maskValue is what the causal mask adds to a score above the diagonal:
// finite, as in ml/sdmodel's export (-Inf becomes NaN in some fp16 and GPU
// kernels); transformers adds float32's lowest value. Either way the
// softmax weight is exactly 0 in float32.
const maskValue = -1e9

type fwd struct {
	c Config
	w model.Lookup
}

// linear is x·Wᵀ + b over the last axis of x (any rank ≥ 2), with W in
// torch's [out, in] layout: layers.Linear, as training/sd uses.
func (f fwd) linear(name string, x *Node) *Node {
	return layers.Linear(x, f.w(name+".weight"), f.w(name+".bias"))
}

// layerNorm is torch's LayerNorm over the last axis (biased variance).
func (f fwd) layerNorm(name string, x *Node) *Node {
	return layers.LayerNorm(x, f.w(name+".weight"), f.w(name+".bias"), f.c.LayerNormEps)
}

func (f fwd) act(x *Node) *Node {
	if f.c.HiddenAct == GELU {
		return layers.GELU(x)
	}
	return Mul(x, Sigmoid(MulScalar(x, 1.702))) // quick_gelu
}

// selfAttention is CLIPAttention with the causal mask [L,L]: q, k, v
// projections with biases, q scaled by head_dim^-½, out_proj.
func (f fwd) selfAttention(name string, x, mask *Node) *Node {
	q := f.linear(name+".q_proj", x)
	k := f.linear(name+".k_proj", x)
	v := f.linear(name+".v_proj", x)
	return f.linear(name+".out_proj", layers.Attention(q, k, v, mask, f.c.NumAttentionHeads))
}

func causalMask(L int) []float32 {
	m := make([]float32, L*L)
	for i := range L {
		for j := i + 1; j < L; j++ {
			m[i*L+j] = maskValue
		}
	}
	return m
}

// Forward encodes token ids [B,L] (any integer dtype; L ≤
// max_position_embeddings, 77 for SD) into last_hidden_state [B,L,D] and
// pooler_output [B,D]: transformers' CLIPTextModel forward without an
// attention mask, as SD's pipelines call it. The pooled output is the
// final state at the end token, found as CLIP does: the position of the
// largest id (the first one on ties; CLIP's end token has the largest id,
// and SD 1.x pads with it). w looks weights up by their transformers names
// (text_model.…). The graph needs no gradient op the pure-Go backend lacks;
// if gradients are built, call model.Release on the graph afterwards.
func Forward(c Config, w model.Lookup, ids *Node) (hidden, pooled *Node) {
	d := ids.Shape().Dimensions
	if len(d) != 2 {
		panic(fmt.Sprintf("textenc: input_ids has shape %v, want [batch, sequence]", d))
	}
	B, L := d[0], d[1]
	if L > c.MaxPositionEmbeddings {
		panic(fmt.Sprintf("textenc: sequence %d is longer than max_position_embeddings %d", L, c.MaxPositionEmbeddings))
	}
	f := fwd{c, w}
	g := ids.Graph()
	ids = ConvertDType(ids, dtypes.Int32)

	// Embedding lookups go through Gather, whose gradient (unlike Slice's)
	// works on the pure-Go backend.
	h := Gather(w(Prefix+"embeddings.token_embedding.weight"), InsertAxes(ids, -1)) // [B,L,D]
	pos := Gather(w(Prefix+"embeddings.position_embedding.weight"), Iota(g, shapes.Make(dtypes.Int32, L, 1), 0))
	h = Add(h, InsertAxes(pos, 0))

	mask := Const(g, causalMask(L))
	mask = Reshape(mask, L, L)
	for i := range c.NumHiddenLayers {
		n := layerName(i)
		h = Add(h, f.selfAttention(n+".self_attn", f.layerNorm(n+".layer_norm1", h), mask))
		x := f.act(f.linear(n+".mlp.fc1", f.layerNorm(n+".layer_norm2", h)))
		h = Add(h, f.linear(n+".mlp.fc2", x))
	}
	hidden = f.layerNorm(Prefix+"final_layer_norm", h)

	eot := ArgMax(ids, 1, dtypes.Int32)                                                            // [B]
	at := Concatenate([]*Node{Iota(g, shapes.Make(dtypes.Int32, B, 1), 0), Reshape(eot, B, 1)}, 1) // [B,2] = (b, eot_b)
	pooled = Gather(hidden, at)                                                                    // [B,D]
	return hidden, pooled
}

// Encoder runs the frozen text encoder on a GoMLX backend (e.g.
// training.Backend(), the pure-Go one by default): the weights are
// converted to tensors once, and the graph is compiled once per
// (batch, sequence) shape. It is not safe for concurrent use.
type Encoder struct {
	c       Config
	weights []any
	exec    *Exec
}

// NewEncoder checks w against c and prepares the encoder on be.
func NewEncoder(be backends.Backend, c Config, w model.Weights) (*Encoder, error) {
	if err := Check(c, w); err != nil {
		return nil, err
	}
	specs := Specs(c)
	e := &Encoder{c: c}
	for _, s := range specs {
		e.weights = append(e.weights, tensors.FromFlatDataAndDimensions(w[s.Name].Data, s.Shape...))
	}
	P := len(specs)
	exec, err := NewExec(be, func(x []*Node) []*Node {
		hidden, pooled := Forward(c, model.LookupFrom(specs, x[:P]), x[P])
		model.Release(hidden.Graph())
		return []*Node{hidden, pooled}
	})
	if err != nil {
		return nil, fmt.Errorf("textenc: %w", err)
	}
	e.exec = exec
	return e, nil
}

// Encode runs ids (batch rows of equal length ≤ max_position_embeddings,
// every id < vocab_size) and returns last_hidden_state [batch·L·D] and
// pooler_output [batch·D], row-major.
func (e *Encoder) Encode(ids [][]int32) (hidden, pooled []float32, err error) {
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("textenc: no input ids")
	}
	L := len(ids[0])
	if L == 0 || L > e.c.MaxPositionEmbeddings {
		return nil, nil, fmt.Errorf("textenc: sequence length %d, want 1..%d", L, e.c.MaxPositionEmbeddings)
	}
	flat := make([]int32, 0, len(ids)*L)
	for b, row := range ids {
		if len(row) != L {
			return nil, nil, fmt.Errorf("textenc: row %d has %d ids, row 0 has %d", b, len(row), L)
		}
		for i, id := range row {
			if id < 0 || int(id) >= e.c.VocabSize {
				return nil, nil, fmt.Errorf("textenc: row %d, position %d: id %d outside the vocabulary [0, %d)", b, i, id, e.c.VocabSize)
			}
		}
		flat = append(flat, row...)
	}
	args := append(append([]any(nil), e.weights...), tensors.FromFlatDataAndDimensions(flat, len(ids), L))
	out, err := e.exec.Exec(args...)
	if err != nil {
		return nil, nil, fmt.Errorf("textenc: %w", err)
	}
	hidden, err = tensors.CopyFlatData[float32](out[0])
	if err != nil {
		return nil, nil, err
	}
	pooled, err = tensors.CopyFlatData[float32](out[1])
	return hidden, pooled, err
}

// Finalize frees the compiled graphs.
func (e *Encoder) Finalize() { e.exec.Finalize() }
