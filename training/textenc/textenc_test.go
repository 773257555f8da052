package textenc

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"

	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/ort/orttest"
	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/layers/layerstest"
	"github.com/face0/face0/training/model"
)

func TestSpecs(t *testing.T) {
	for _, c := range []Config{SD1(), Tiny()} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, s := range Specs(c) {
			if seen[s.Name] {
				t.Errorf("duplicate weight %s", s.Name)
			}
			seen[s.Name] = true
		}
	}
	specs := Specs(SD1())
	// transformers' CLIPTextModel for openai/clip-vit-large-patch14 (SD 1.x's
	// text_encoder): 123,060,480 weights in 196 tensors. By hand:
	// 49408·768 + 77·768 + 12·(4·(768²+768) + 2·(768·3072) + 3072 + 768 + 4·768) + 2·768.
	perLayer := 4*(768*768+768) + 768*3072 + 3072 + 3072*768 + 768 + 4*768
	if byHand := 49408*768 + 77*768 + 12*perLayer + 2*768; byHand != 123060480 {
		t.Fatalf("hand count %d", byHand)
	}
	if n := model.ParamCount(specs); n != 123060480 {
		t.Errorf("SD 1.x text encoder has %d weights, want 123060480", n)
	}
	if len(specs) != 196 {
		t.Errorf("SD 1.x text encoder has %d tensors, want 196", len(specs))
	}
	got := map[string][]int{}
	for _, s := range specs {
		got[s.Name] = s.Shape
	}
	for name, want := range map[string][]int{
		"text_model.embeddings.token_embedding.weight":         {49408, 768},
		"text_model.embeddings.position_embedding.weight":      {77, 768},
		"text_model.encoder.layers.0.self_attn.q_proj.weight":  {768, 768},
		"text_model.encoder.layers.11.self_attn.out_proj.bias": {768},
		"text_model.encoder.layers.5.layer_norm1.weight":       {768},
		"text_model.encoder.layers.5.layer_norm2.bias":         {768},
		"text_model.encoder.layers.7.mlp.fc1.weight":           {3072, 768},
		"text_model.encoder.layers.7.mlp.fc1.bias":             {3072},
		"text_model.encoder.layers.7.mlp.fc2.weight":           {768, 3072},
		"text_model.final_layer_norm.weight":                   {768},
	} {
		if !slices.Equal(got[name], want) {
			t.Errorf("%s: shape %v, want %v", name, got[name], want)
		}
	}
	if got["text_model.encoder.layers.12.mlp.fc1.weight"] != nil {
		t.Error("layer 12 should not exist")
	}
	// A transformers config.json decodes into Config.
	var c Config
	js := `{"architectures":["CLIPTextModel"],"hidden_act":"quick_gelu","hidden_size":768,"intermediate_size":3072,
	 "layer_norm_eps":1e-05,"max_position_embeddings":77,"num_attention_heads":12,"num_hidden_layers":12,
	 "projection_dim":768,"vocab_size":49408,"eos_token_id":2}`
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	if c != SD1() {
		t.Errorf("config.json decodes to %+v, want %+v", c, SD1())
	}
	t.Logf("tiny text encoder: %d weights in %d tensors", model.ParamCount(Specs(Tiny())), len(Specs(Tiny())))
}

func TestValidate(t *testing.T) {
	c := Tiny()
	c.NumAttentionHeads = 3
	c.HiddenAct = "relu"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "3 heads") || !strings.Contains(err.Error(), `"relu"`) {
		t.Errorf("Validate: %v", err)
	}
}

func i64Tensor(v []int64, shape ...int) safetensors.Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return safetensors.Tensor{DType: safetensors.I64, Shape: shape, Data: b}
}

func TestLoadWeightsStrict(t *testing.T) {
	c := Tiny()
	dir := t.TempDir()
	good := NewWeights(c, 1)

	// A transformers file, with the position_ids buffer older versions saved.
	ts := map[string]safetensors.Tensor{}
	for k, v := range good {
		ts[k] = safetensors.FromFloat32(v.Shape, v.Data)
	}
	pos := make([]int64, 77)
	for i := range pos {
		pos[i] = int64(i)
	}
	ts[PositionIDs] = i64Tensor(pos, 1, 77)
	path := filepath.Join(dir, "model.safetensors")
	if err := safetensors.Write(path, ts); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWeights(path, c, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != len(good) {
		t.Errorf("%d tensors loaded, want %d", len(w), len(good))
	}
	for name, x := range good {
		if !slices.Equal(w[name].Data, x.Data) {
			t.Fatalf("%s changed in the round trip", name)
		}
	}
	// A prefixed checkpoint with another network's tensors beside it.
	pre := model.Weights{"unet.conv_in.bias": {Shape: []int{1}, Data: []float32{1}}}
	for k, v := range good {
		pre["text_encoder."+k] = v
	}
	ppath := filepath.Join(dir, "ckpt.safetensors")
	if err := pre.Save(ppath, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWeights(ppath, c, "text_encoder."); err != nil {
		t.Fatal(err)
	}

	bad := good.Clone()
	var removed []string
	for k := range bad {
		if strings.HasPrefix(k, "text_model.encoder.layers.1.") { // a whole layer: all 16 must be named
			removed = append(removed, k)
			delete(bad, k)
		}
	}
	bad["text_model.mystery.weight"] = &model.Tensor{Shape: []int{2}, Data: []float32{1, 2}}
	bad["text_model.encoder.layers.0.mlp.fc1.weight"] = &model.Tensor{Shape: []int{32, 128}, Data: make([]float32, 32*128)}
	p := filepath.Join(dir, "bad.safetensors")
	if err := bad.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	_, err = LoadWeights(p, c, "")
	if err == nil {
		t.Fatal("loaded without error")
	}
	msg := err.Error()
	want := append([]string{p, "unexpected: text_model.mystery.weight", "text_model.encoder.layers.0.mlp.fc1.weight has shape [32 128], want [128 32]"}, removed...)
	for _, s := range want {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not say %q:\n%s", s, msg)
		}
	}
	if len(removed) != 16 {
		t.Errorf("%d tensors removed, want 16", len(removed))
	}
}

// testIDs are SD-tokenizer-like rows: BOS (vocab-2), words, EOS (vocab-1,
// the largest id), then EOS padding, so argmax has ties and must take the
// first; the last row has no padding and one has a word id at the end.
func testIDs(c Config, B, L int) [][]int32 {
	r := rand.New(rand.NewPCG(7, 7))
	bos, eos := int32(c.VocabSize-2), int32(c.VocabSize-1)
	out := make([][]int32, B)
	for b := range B {
		n := 1 + (b*5+3)%(L-1) // words before EOS
		row := []int32{bos}
		for len(row) < min(n, L-1) {
			row = append(row, int32(r.IntN(c.VocabSize-2)))
		}
		for len(row) < L {
			row = append(row, eos)
		}
		out[b] = row
	}
	return out
}

func encode(t *testing.T, e *Encoder, ids [][]int32) (hidden, pooled []float32) {
	t.Helper()
	hidden, pooled, err := e.Encode(ids)
	if err != nil {
		t.Fatal(err)
	}
	return hidden, pooled
}

// TestForward checks, on the pure-Go backend, that the pooled output is
// the final state at the first largest id, that attention is causal, and
// that a shorter sequence gives the same states as the prefix of a longer
// one.
func TestForward(t *testing.T) {
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 2), Specs(c), 0.05)
	e, err := NewEncoder(layerstest.Backend(t), c, w)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	D, L := c.HiddenSize, c.MaxPositionEmbeddings
	ids := testIDs(c, 4, L)
	hidden, pooled := encode(t, e, ids)
	for b, row := range ids {
		at := 0
		for i, id := range row {
			if id > row[at] {
				at = i
			}
		}
		if got, want := pooled[b*D:(b+1)*D], hidden[(b*L+at)*D:(b*L+at+1)*D]; !slices.Equal(got, want) {
			t.Errorf("row %d: pooler_output is not last_hidden_state at position %d", b, at)
		}
	}
	// Causal: changing the last token changes only the last position.
	ids2 := [][]int32{slices.Clone(ids[0])}
	ids2[0][L-1] = 5
	h2, _ := encode(t, e, ids2)
	if !slices.Equal(h2[:(L-1)*D], hidden[:(L-1)*D]) {
		t.Error("changing the last token changed earlier positions")
	}
	if slices.Equal(h2[(L-1)*D:L*D], hidden[(L-1)*D:L*D]) {
		t.Error("changing the last token did not change its position")
	}
	// A 16-token prefix gives the same first 16 states.
	short := [][]int32{ids[0][:16]}
	hs, _ := encode(t, e, short)
	layerstest.Compare(t, "16-token prefix vs 77-token states", hs, hidden[:16*D], 1e-6)
	if _, _, err := e.Encode([][]int32{{1, int32(c.VocabSize)}}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("out-of-vocabulary id: %v", err)
	}
}

// TestONNXParity exports the tiny text encoder and runs it in onnxruntime
// against the GoMLX forward (pure-Go backend) on the same weights and ids,
// at the full 77 tokens and at a shorter dynamic length.
func TestONNXParity(t *testing.T) {
	orttest.Require(t)
	c := Tiny()
	w := layerstest.Perturbed(NewWeights(c, 3), Specs(c), 0.05)
	dir := t.TempDir()
	if err := WriteONNX(dir, c, w); err != nil {
		t.Fatal(err)
	}
	e, err := NewEncoder(layerstest.Backend(t), c, w)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	s, err := ort.Load(filepath.Join(dir, sdmodel.TextEncoderFile), ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, L := range []int{c.MaxPositionEmbeddings, 20} {
		ids := testIDs(c, 3, L)
		hidden, pooled := encode(t, e, ids)
		var flat []int32
		for _, row := range ids {
			flat = append(flat, row...)
		}
		res, err := s.Run(map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(flat, int64(len(ids)), int64(L))})
		if err != nil {
			t.Fatal(err)
		}
		if sh := res[sdmodel.OutLastHidden].Shape; !slices.Equal(sh, []int64{3, int64(L), int64(c.HiddenSize)}) {
			t.Errorf("last_hidden_state shape %v", sh)
		}
		layerstest.Compare(t, "GoMLX vs onnxruntime last_hidden_state, "+strconv.Itoa(L)+" tokens", hidden, res[sdmodel.OutLastHidden].Float32(), 1e-4)
		layerstest.Compare(t, "GoMLX vs onnxruntime pooler_output, "+strconv.Itoa(L)+" tokens", pooled, res[sdmodel.OutPooled].Float32(), 1e-4)
	}
}

// TestSD1GraphShapes builds (without running) the full SD 1.x text encoder
// graph, so GoMLX's shape checks verify the full config.
func TestSD1GraphShapes(t *testing.T) {
	c := SD1()
	g := NewGraph(layerstest.Backend(t), "sd1_text_encoder")
	defer g.Finalize()
	specs := Specs(c)
	nodes := make([]*Node, len(specs))
	for i, s := range specs {
		nodes[i] = Parameter(g, s.Name, shapes.Make(dtypes.Float32, s.Shape...))
	}
	ids := Parameter(g, sdmodel.InInputIDs, shapes.Make(dtypes.Int32, 2, 77))
	hidden, pooled := Forward(c, model.LookupFrom(specs, nodes), ids)
	model.Release(g)
	if want := []int{2, 77, 768}; !slices.Equal(hidden.Shape().Dimensions, want) {
		t.Errorf("last_hidden_state shape %v, want %v", hidden.Shape().Dimensions, want)
	}
	if want := []int{2, 768}; !slices.Equal(pooled.Shape().Dimensions, want) {
		t.Errorf("pooler_output shape %v, want %v", pooled.Shape().Dimensions, want)
	}
}

// TestSD1Forward runs the full-size SD 1.x text encoder (random weights)
// on the pure-Go backend when FACE0_TEXTENC_SD1=1: it takes ~0.5 GB of
// weights and tens of seconds on a small machine, so it is opt-in.
func TestSD1Forward(t *testing.T) {
	if os.Getenv("FACE0_TEXTENC_SD1") != "1" {
		t.Skip("set FACE0_TEXTENC_SD1=1 to run the full-size text encoder")
	}
	c := SD1()
	start := time.Now()
	w := NewWeights(c, 1)
	e, err := NewEncoder(layerstest.Backend(t), c, w)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	ids := testIDs(c, 1, 77)
	t.Logf("weights ready in %.1fs", time.Since(start).Seconds())
	start = time.Now()
	h, p := encode(t, e, ids)
	first := time.Since(start)
	start = time.Now()
	encode(t, e, ids)
	t.Logf("SD 1.x text encoder, batch 1, 77 tokens, pure-Go backend: first run (with compile) %.2fs, then %.2fs; %d hidden, %d pooled values",
		first.Seconds(), time.Since(start).Seconds(), len(h), len(p))
	for _, v := range p {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("pooled output not finite")
		}
	}
}

// sdmodelParams maps ml/sdmodel's text encoder weight names (no text_model.
// prefix; to_q/to_k/to_v/to_out; linear weights [in, out]) to w, and gives
// seeded random weights for sdmodel's other networks.
func sdmodelParams(w model.Weights) sdmodel.Params {
	rnd := sdmodel.Random(1)
	renames := strings.NewReplacer(".to_q.", ".q_proj.", ".to_k.", ".k_proj.", ".to_v.", ".v_proj.", ".to_out.", ".out_proj.")
	return func(name string, kind sdmodel.Init, fanIn int, shape ...int) []float32 {
		if !strings.HasPrefix(name, "embeddings.") && !strings.HasPrefix(name, "encoder.layers.") && !strings.HasPrefix(name, "final_layer_norm.") {
			return rnd(name, kind, fanIn, shape...)
		}
		t := w[Prefix+renames.Replace(name)]
		if t == nil { // the shape probe
			return rnd(name, kind, fanIn, shape...)
		}
		if len(shape) == 2 && strings.HasPrefix(name, "encoder.layers.") { // a linear weight
			in, out := shape[0], shape[1] // sdmodel stores [in, out]; torch [out, in]
			tr := make([]float32, len(t.Data))
			for o := range out {
				for i := range in {
					tr[i*out+o] = t.Data[o*in+i]
				}
			}
			return tr
		}
		return slices.Clone(t.Data)
	}
}

// TestMatchesSDModel runs ml/sdmodel's own (independently written) tiny
// CLIP text encoder in onnxruntime with this package's weights and compares
// it with the GoMLX forward: the two must agree on the architecture.
func TestMatchesSDModel(t *testing.T) {
	orttest.Require(t)
	sc := sdmodel.TinyConfig()
	// Probe sdmodel's vocabulary size through the shape it asks for.
	vocab := 0
	probe := func(name string, kind sdmodel.Init, fanIn int, shape ...int) []float32 {
		if name == "embeddings.token_embedding.weight" {
			vocab = shape[0]
		}
		return sdmodel.Random(1)(name, kind, fanIn, shape...)
	}
	if err := sdmodel.Export(t.TempDir(), sc, probe); err != nil {
		t.Fatal(err)
	}
	c := Tiny()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = vocab, sc.TextWidth, sc.TextLayers, sc.TextHeads
	c.IntermediateSize, c.MaxPositionEmbeddings = 4*sc.TextWidth, sc.ContextLength
	w := layerstest.Perturbed(NewWeights(c, 4), Specs(c), 0.05)
	dir := t.TempDir()
	if err := sdmodel.Export(dir, sc, sdmodelParams(w)); err != nil {
		t.Fatal(err)
	}
	s, err := ort.Load(filepath.Join(dir, sdmodel.TextEncoderFile), ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := NewEncoder(layerstest.Backend(t), c, w)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	ids := testIDs(c, 2, c.MaxPositionEmbeddings)
	hidden, pooled := encode(t, e, ids)
	flat := append(slices.Clone(ids[0]), ids[1]...)
	res, err := s.Run(map[string]ort.Tensor{sdmodel.InInputIDs: ort.I32(flat, 2, int64(c.MaxPositionEmbeddings))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sdmodel tiny text encoder: vocabulary %d, width %d, %d layers, %d heads", vocab, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads)
	layerstest.Compare(t, "GoMLX vs sdmodel's text encoder, last_hidden_state", hidden, res[sdmodel.OutLastHidden].Float32(), 1e-4)
	layerstest.Compare(t, "GoMLX vs sdmodel's text encoder, pooler_output", pooled, res[sdmodel.OutPooled].Float32(), 1e-4)
}
