package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/face0/face0/ml/safetensors"
)

// Name prefixes of the two networks in a weight file. Exported ONNX graphs
// use the names without the prefix (so the projection's initializers are
// "proj.0.weight"... exactly as ml/sdmodel names them).
const (
	DenoiserPrefix   = "unet."
	ProjectionPrefix = "projection."
)

// Init says how a weight starts out.
type Init int

// Weight initialisations.
const (
	InitLinear Init = iota // N(0, 1/fan_in)
	InitZeros              // biases, norm shifts
	InitOnes               // norm scales
	InitSmall              // N(0, 0.02²): position embeddings, the output layer
)

// ParamSpec describes one weight.
type ParamSpec struct {
	Name  string // with its network prefix
	Shape []int
	Init  Init
	FanIn int // for InitLinear
}

// Size is the element count.
func (p ParamSpec) Size() int { return numElements(p.Shape) }

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Specs lists every weight of both networks in a fixed order: the
// projection's, then the denoiser's. Linear weights are stored [in, out]
// (torch stores [out, in]) so both runtimes compute x·W without a transpose.
func (c Config) Specs() []ParamSpec {
	return append(c.ProjectionSpecs(), c.DenoiserSpecs()...)
}

type specList []ParamSpec

func (l *specList) linear(name string, in, out int, bias bool) {
	*l = append(*l, ParamSpec{Name: name + ".weight", Shape: []int{in, out}, Init: InitLinear, FanIn: in})
	if bias {
		*l = append(*l, ParamSpec{Name: name + ".bias", Shape: []int{out}, Init: InitZeros})
	}
}

func (l *specList) norm(name string, width int) {
	*l = append(*l,
		ParamSpec{Name: name + ".weight", Shape: []int{width}, Init: InitOnes},
		ParamSpec{Name: name + ".bias", Shape: []int{width}, Init: InitZeros})
}

// ProjectionSpecs are the projection MLP's weights: proj.{0..3}.{weight,bias}.
func (c Config) ProjectionSpecs() []ParamSpec {
	var l specList
	in := c.EmbeddingDim
	for i := range ProjectionLayers {
		out := c.ProjHidden
		if i == ProjectionLayers-1 {
			out = c.FaceTokens * c.TextWidth
		}
		l.linear(ProjectionPrefix+"proj."+strconv.Itoa(i), in, out, true)
		in = out
	}
	return l
}

// DenoiserSpecs are the denoiser's weights, named after diffusers'
// Transformer2DModel (patch-embedding variant) and UNet2DConditionModel
// where the parts correspond.
func (c Config) DenoiserSpecs() []ParamSpec {
	var l specList
	p := DenoiserPrefix
	W, D, T := c.Width, c.TextWidth, c.TimeDim
	l.linear(p+"pos_embed.proj", c.PatchDim(), W, true)
	l = append(l, ParamSpec{Name: p + "pos_embed.pos_embedding", Shape: []int{c.Tokens(), W}, Init: InitSmall})
	l.linear(p+"time_embedding.linear_1", c.TimeFreqDim, T, true)
	l.linear(p+"time_embedding.linear_2", T, T, true)
	for i := range c.Blocks {
		b := p + "transformer_blocks." + strconv.Itoa(i)
		l.linear(b+".time_emb_proj", T, W, true)
		l.norm(b+".norm1", W)
		l.linear(b+".attn1.to_q", W, W, false)
		l.linear(b+".attn1.to_k", W, W, false)
		l.linear(b+".attn1.to_v", W, W, false)
		l.linear(b+".attn1.to_out", W, W, true)
		l.norm(b+".norm2", W)
		l.linear(b+".attn2.to_q", W, W, false)
		l.linear(b+".attn2.to_k", D, W, false)
		l.linear(b+".attn2.to_v", D, W, false)
		l.linear(b+".attn2.to_out", W, W, true)
		l.norm(b+".norm3", W)
		l.linear(b+".ff.proj", W, c.MLPRatio*W, true)
		l.linear(b+".ff.out", c.MLPRatio*W, W, true)
	}
	l.norm(p+"norm_out", W)
	l.linear(p+"proj_out", W, c.PatchDim(), true)
	l[len(l)-2].Init = InitSmall // proj_out.weight: start near a zero prediction, as DiT does
	if c.PatchSkip {
		l = append(l, ParamSpec{Name: p + "patch_skip.weight", Shape: []int{c.PatchDim(), c.PatchDim()}, Init: InitZeros})
	}
	return l
}

// ParamCount sums the element counts of specs.
func ParamCount(specs []ParamSpec) int {
	n := 0
	for _, s := range specs {
		n += s.Size()
	}
	return n
}

// Tensor is one weight: row-major float32 data and its shape.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Weights maps weight names (with prefixes) to values.
type Weights map[string]*Tensor

// Clone deep-copies w.
func (w Weights) Clone() Weights {
	out := make(Weights, len(w))
	for k, t := range w {
		out[k] = &Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
	}
	return out
}

// NewWeights initialises every weight of specs. Each weight's values depend
// only on the seed and its name, so adding a layer leaves the others as
// they were.
func NewWeights(specs []ParamSpec, seed uint64) Weights {
	w := make(Weights, len(specs))
	for _, s := range specs {
		data := make([]float32, s.Size())
		std := 0.0
		switch s.Init {
		case InitOnes:
			for i := range data {
				data[i] = 1
			}
		case InitLinear:
			std = 1 / math.Sqrt(float64(max(s.FanIn, 1)))
		case InitSmall:
			std = 0.02
		}
		if std > 0 {
			h := fnv.New64a()
			h.Write([]byte(s.Name))
			r := rand.New(rand.NewPCG(seed, h.Sum64()))
			for i := range data {
				data[i] = float32(r.NormFloat64() * std)
			}
		}
		w[s.Name] = &Tensor{Shape: slices.Clone(s.Shape), Data: data}
	}
	return w
}

// Check verifies that w holds exactly the weights of specs with their
// shapes. The error names every missing, extra and mis-shaped tensor.
func Check(w Weights, specs []ParamSpec) error {
	var missing, shape []string
	want := make(map[string]bool, len(specs))
	for _, s := range specs {
		want[s.Name] = true
		t, ok := w[s.Name]
		switch {
		case !ok:
			missing = append(missing, s.Name)
		case !slices.Equal(t.Shape, s.Shape):
			shape = append(shape, fmt.Sprintf("%s has shape %v, want %v", s.Name, t.Shape, s.Shape))
		case len(t.Data) != s.Size():
			shape = append(shape, fmt.Sprintf("%s has %d values, its shape %v needs %d", s.Name, len(t.Data), s.Shape, s.Size()))
		}
	}
	var extra []string
	for k := range w {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+listNames(missing))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected "+listNames(extra))
	}
	if len(shape) > 0 {
		parts = append(parts, "wrong shape: "+listNames(shape))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("weights do not match the model config: %s", strings.Join(parts, "; "))
}

func listNames(names []string) string {
	const most = 8
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(" and %d more", len(names)-most)
	}
	return strings.Join(names, ", ")
}

// Save writes w to a safetensors file (float32, sorted by name).
func (w Weights) Save(path string, metadata map[string]string) error {
	ts := make(map[string]safetensors.Tensor, len(w))
	for k, t := range w {
		ts[k] = safetensors.FromFloat32(t.Shape, t.Data)
	}
	var opts []safetensors.WriteOption
	if len(metadata) > 0 {
		opts = append(opts, safetensors.WithMetadata(metadata))
	}
	return safetensors.Write(path, ts, opts...)
}

// ReadWeights reads every tensor of a safetensors file as float32, without
// checking it against a config.
func ReadWeights(path string) (Weights, map[string]string, error) {
	// Tensor by tensor: a full-size checkpoint's file is not held beside
	// its values.
	f, err := safetensors.OpenReader(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	w := make(Weights, len(f.Names()))
	for _, name := range f.Names() {
		data, shape, err := f.Float32(name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		w[name] = &Tensor{Shape: shape, Data: data}
	}
	return w, f.Metadata(), nil
}

// LoadWeights reads a weight file and checks it against specs: a missing,
// extra or mis-shaped tensor is an error naming it.
func LoadWeights(path string, specs []ParamSpec) (Weights, error) {
	w, _, err := ReadWeights(path)
	if err != nil {
		return nil, err
	}
	if err := Check(w, specs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}
