package textenc

import (
	"strconv"

	"github.com/face0/face0/training/model"
)

// Weights are stored in torch's layouts, as transformers saves them: linear
// [out, in], embeddings [rows, D], norms [D].

// Prefix is the text model's prefix inside CLIPTextModel's state dict.
const Prefix = "text_model."

// PositionIDs is the position_ids buffer (int64 [1, 77]) that older
// transformers versions saved beside the weights; LoadWeights ignores it.
const PositionIDs = Prefix + "embeddings.position_ids"

type specs []model.ParamSpec

func (l *specs) linear(name string, in, out int) {
	*l = append(*l,
		model.ParamSpec{Name: name + ".weight", Shape: []int{out, in}, Init: model.InitLinear, FanIn: in},
		model.ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: model.InitZeros})
}

func (l *specs) norm(name string, d int) {
	*l = append(*l,
		model.ParamSpec{Name: name + ".weight", Shape: []int{d}, Init: model.InitOnes},
		model.ParamSpec{Name: name + ".bias", Shape: []int{d}, Init: model.InitZeros})
}

func layerName(i int) string { return Prefix + "encoder.layers." + strconv.Itoa(i) }

// Specs lists every weight of the text model described by c, with
// transformers' names (text_model.…) and torch's shapes, in the order of
// CLIPTextModel's state dict. Initialisation: N(0, 0.02²) for the
// embeddings, N(0, 1/fan_in) for linear weights, zero biases, unit norm
// scales.
func Specs(c Config) []model.ParamSpec {
	D, F := c.HiddenSize, c.IntermediateSize
	l := specs{
		{Name: Prefix + "embeddings.token_embedding.weight", Shape: []int{c.VocabSize, D}, Init: model.InitSmall},
		{Name: Prefix + "embeddings.position_embedding.weight", Shape: []int{c.MaxPositionEmbeddings, D}, Init: model.InitSmall},
	}
	for i := range c.NumHiddenLayers {
		n := layerName(i)
		l.linear(n+".self_attn.k_proj", D, D)
		l.linear(n+".self_attn.v_proj", D, D)
		l.linear(n+".self_attn.q_proj", D, D)
		l.linear(n+".self_attn.out_proj", D, D)
		l.norm(n+".layer_norm1", D)
		l.linear(n+".mlp.fc1", D, F)
		l.linear(n+".mlp.fc2", F, D)
		l.norm(n+".layer_norm2", D)
	}
	l.norm(Prefix+"final_layer_norm", D)
	return l
}
