package textenc

import (
	"path/filepath"
	"strings"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers"
	"github.com/face0/face0/training/model"
)

// exporter writes the text encoder into an ONNX graph.
type exporter struct {
	layers.Exporter
	c Config
}

func (e exporter) layerNorm(name string, x onnx.Value) onnx.Value {
	return e.LayerNorm(name, x, float32(e.c.LayerNormEps))
}

func (e exporter) act(x onnx.Value) onnx.Value {
	if e.c.HiddenAct == GELU {
		return e.G.Gelu(x)
	}
	return e.G.QuickGelu(x)
}

// Export builds the text encoder as an ONNX graph with SD's interface
// (ml/sdmodel's names): input_ids int32[batch,sequence] →
// last_hidden_state float32[batch,sequence,D] and pooler_output
// float32[batch,D]. The sequence axis is dynamic (≤ max_position_embeddings),
// as in diffusers' export: position embeddings and the causal mask are
// sliced to it. Initializers keep transformers' names (text_model.…).
func Export(c Config, w model.Weights) (*onnx.Graph, error) {
	if err := Check(c, w); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("text_encoder")
	e := exporter{layers.Exporter{G: g, W: w, Pkg: "textenc"}, c}
	D, L := c.HiddenSize, c.MaxPositionEmbeddings
	ids := g.Input(sdmodel.InInputIDs, onnx.Int32, "batch", "sequence")

	seqLen := g.Slice(g.Shape(ids), []int64{1}, []int64{2}, []int64{0}) // [1] int64
	h := g.Gather(e.Init(Prefix+"embeddings.token_embedding.weight"), ids, 0)
	pos := g.SliceV(e.Init(Prefix+"embeddings.position_embedding.weight"), g.Ints(0), seqLen, g.Ints(0))
	h = g.Add(h, pos)

	mask := g.Initializer("causal_mask", causalMask(L), L, L)
	mask = g.SliceV(mask, g.Ints(0, 0), g.Concat(0, seqLen, seqLen), g.Ints(0, 1))

	for i := range c.NumHiddenLayers {
		n := layerName(i)
		g.Push(n)
		x := e.layerNorm(n+".layer_norm1", h)
		a := n + ".self_attn"
		q, k, v := e.Linear(a+".q_proj", x, true), e.Linear(a+".k_proj", x, true), e.Linear(a+".v_proj", x, true)
		h = g.Add(h, e.Linear(a+".out_proj", g.Attention(q, k, v, c.NumAttentionHeads, D, mask), true))
		x = e.act(e.Linear(n+".mlp.fc1", e.layerNorm(n+".layer_norm2", h), true))
		h = g.Add(h, e.Linear(n+".mlp.fc2", x, true))
		g.Pop()
	}
	h = e.layerNorm(Prefix+"final_layer_norm", h)
	g.Output(sdmodel.OutLastHidden, h, "batch", "sequence", D)

	// pooler_output: the row at argmax(ids) (the first on ties, as torch),
	// picked with a one-hot over the sequence.
	eot := g.ArgMax(ids, -1, true) // [batch,1] int64
	positions := make([]int64, L)
	for i := range positions {
		positions[i] = int64(i)
	}
	ar := g.SliceV(g.InitializerInt64("positions", positions, L), g.Ints(0), seqLen, g.Ints(0))
	onehot := g.Unsqueeze(g.Cast(g.Equal(ar, eot), onnx.Float), 2) // [batch,sequence,1]
	g.Output(sdmodel.OutPooled, g.ReduceSum(g.Mul(h, onehot), false, 1), "batch", D)
	return g, g.Err()
}

// WriteONNX exports the text encoder to dir/text_encoder/model.onnx
// (ml/sdmodel's file name); opts go to onnx's Save (SD1's 492 MB of
// float32 weights stay inline under its default external-data threshold).
func WriteONNX(dir string, c Config, w model.Weights, opts ...onnx.SaveOption) error {
	g, err := Export(c, w)
	if err != nil {
		return err
	}
	return layers.Save(g, filepath.Join(dir, sdmodel.TextEncoderFile), "textenc", opts...)
}

// ReadONNX reads the text encoder's weights back from a model Export wrote,
// checked against c.
func ReadONNX(path string, c Config) (model.Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// Linear weights are stored transposed; the two embedding tables are not.
	linear := func(s model.ParamSpec) bool {
		return len(s.Shape) == 2 && !strings.HasPrefix(s.Name, Prefix+"embeddings.")
	}
	return layers.ReadONNX(path, Specs(c), linear, "textenc: the text encoder's weights")
}
