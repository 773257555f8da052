package sdmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/onnx"
)

// Model is a checked model folder: the manifest, the scheduler settings and
// each component's interface, with absolute paths ready for ort.Load.
type Model struct {
	Dir       string
	Manifest  Manifest
	Scheduler SchedulerConfig

	TextEncoder, UNet, VAEDecoder, Projection *onnx.ModelInfo

	// InputIDsType is the text encoder's input_ids type (int32 in the
	// diffusers export, int64 in some others).
	InputIDsType onnx.DType
	// TimestepType is the UNet's timestep type: float32 [batch] in the
	// diffusers export, int64 [1] in some older ones. The sampler must feed
	// this type.
	TimestepType onnx.DType

	Tokenizer *clip.Tokenizer
}

// Path joins a folder-relative file name (such as UNetFile) to the folder.
func (m *Model) Path(file string) string { return filepath.Join(m.Dir, filepath.FromSlash(file)) }

// Validate checks a model folder; see Load.
func Validate(dir string) error {
	_, err := Load(dir)
	return err
}

// Load checks that dir is a complete Face0 model folder and reads its
// description: every file is present; each ONNX file parses and declares the
// SD 1.x input and output names with the right element types and ranks,
// and sizes that agree with face0.json (latent channels, text width,
// embedding dimension, three face tokens); the tokenizer and scheduler files
// load. The weights are not read, so this is cheap even for a full-size
// model. The first problem found is returned, naming the file.
func Load(dir string) (*Model, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sdmodel: %w", err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("sdmodel: %s is not a model folder (it does not exist or is a file)", dir)
	}
	m := &Model{Dir: abs}
	if _, err := os.Stat(m.Path(ManifestFile)); err == nil {
		if err := m.readManifest(); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, f := range []string{ManifestFile, TextEncoderFile, UNetFile, VAEDecoderFile, ProjectionFile, VocabFile, MergesFile, SchedulerFile} {
		if f == ProjectionFile && !m.Manifest.HasFace() {
			continue // an imported base model: no projection yet
		}
		if _, err := os.Stat(m.Path(f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sdmodel: %s: missing %s (a Face0 model folder needs %s, %s, %s, %s, %s, %s, %s and %s)",
			abs, strings.Join(missing, ", "), ManifestFile, TextEncoderFile, UNetFile, VAEDecoderFile, ProjectionFile, VocabFile, MergesFile, SchedulerFile)
	}
	if err := m.readScheduler(); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		file  string
		dst   **onnx.ModelInfo
		check func(*onnx.ModelInfo) error
	}{
		{TextEncoderFile, &m.TextEncoder, m.checkTextEncoder},
		{UNetFile, &m.UNet, m.checkUNet},
		{VAEDecoderFile, &m.VAEDecoder, m.checkVAE},
		{ProjectionFile, &m.Projection, m.checkProjection},
	} {
		if c.file == ProjectionFile && !m.Manifest.HasFace() {
			continue
		}
		info, err := onnx.Inspect(m.Path(c.file))
		if err != nil {
			return nil, fmt.Errorf("sdmodel: %w", err)
		}
		if err := c.check(info); err != nil {
			return nil, fmt.Errorf("sdmodel: %s: %w", m.Path(c.file), err)
		}
		*c.dst = info
	}
	if m.Tokenizer, err = clip.LoadDir(abs); err != nil {
		return nil, fmt.Errorf("sdmodel: tokenizer: %w", err)
	}
	return m, nil
}

func (m *Model) readManifest() error {
	path := m.Path(ManifestFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sdmodel: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m.Manifest); err != nil {
		return fmt.Errorf("sdmodel: %s: not a valid manifest: %v", path, err)
	}
	mf := m.Manifest
	var problems []string
	bad := func(cond bool, format string, args ...any) {
		if cond {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	bad(mf.Format != ManifestFormat, "format is %q, want %q", mf.Format, ManifestFormat)
	bad(mf.Projection != "" && mf.Projection != ProjectionTrained && mf.Projection != ProjectionUntrained,
		"projection is %q, want %q or %q", mf.Projection, ProjectionTrained, ProjectionUntrained)
	bad(mf.HasFace() && mf.Embedding.Space == "", "embedding.space is empty")
	bad(mf.HasFace() && mf.Embedding.Dim <= 0, "embedding.dim is %d", mf.Embedding.Dim)
	bad(mf.FaceTokens != 3, "face_tokens is %d; Face0 replaces 3 context tokens", mf.FaceTokens)
	bad(mf.TextWidth <= 0, "text_width is %d", mf.TextWidth)
	bad(mf.ContextLength < mf.FaceTokens, "context_length %d is shorter than face_tokens", mf.ContextLength)
	bad(mf.FaceTokenStart < 0 || mf.FaceTokenStart+mf.FaceTokens > mf.ContextLength,
		"face tokens %d..%d do not fit the %d-token context", mf.FaceTokenStart, mf.FaceTokenStart+mf.FaceTokens-1, mf.ContextLength)
	bad(mf.LatentChannels <= 0, "latent_channels is %d", mf.LatentChannels)
	bad(mf.VAEScaleFactor <= 0, "vae_scale_factor is %d", mf.VAEScaleFactor)
	bad(mf.LatentScale <= 0, "latent_scale is %g", mf.LatentScale)
	if len(problems) > 0 {
		return fmt.Errorf("sdmodel: %s: %s", path, strings.Join(problems, "; "))
	}
	return nil
}

func (m *Model) readScheduler() error {
	path := m.Path(SchedulerFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sdmodel: %w", err)
	}
	if err := json.Unmarshal(raw, &m.Scheduler); err != nil {
		return fmt.Errorf("sdmodel: %s: not valid JSON: %v", path, err)
	}
	s := m.Scheduler
	if s.NumTrainTimesteps <= 0 || s.BetaStart <= 0 || s.BetaEnd <= s.BetaStart {
		return fmt.Errorf("sdmodel: %s: needs num_train_timesteps > 0 and 0 < beta_start < beta_end (got %d, %g, %g)", path, s.NumTrainTimesteps, s.BetaStart, s.BetaEnd)
	}
	return nil
}

// spec is one expected input or output: its name, allowed types and rank,
// and required sizes by axis (-1: any).
type spec struct {
	name  string
	types []onnx.DType
	rank  int
	sizes map[int]int64
}

// expect checks a model's inputs (exactly these names) and outputs (at
// least these), and returns the type found for each input.
func expect(info *onnx.ModelInfo, inputs, outputs []spec) (map[string]onnx.DType, error) {
	found := map[string]onnx.DType{}
	for _, in := range info.Inputs {
		known := false
		for _, s := range inputs {
			known = known || s.name == in.Name
		}
		if !known {
			return nil, fmt.Errorf("unexpected input %q (the model's inputs should be %s; found %s)", in.Name, specNames(inputs), describe(info.Inputs))
		}
	}
	check := func(kind string, list []onnx.TensorInfo, s spec) error {
		var t onnx.TensorInfo
		ok := false
		for _, x := range list {
			if x.Name == s.name {
				t, ok = x, true
			}
		}
		if !ok {
			return fmt.Errorf("no %s named %q (found %s)", kind, s.name, describe(list))
		}
		typeOK := false
		for _, dt := range s.types {
			typeOK = typeOK || t.DType == dt
		}
		if !typeOK {
			return fmt.Errorf("%s %q is %s, want %s", kind, s.name, t.DType, typeNames(s.types))
		}
		if t.Rank() >= 0 && t.Rank() != s.rank {
			return fmt.Errorf("%s %s has rank %d, want %d", kind, t, t.Rank(), s.rank)
		}
		for axis, want := range s.sizes {
			if t.Rank() > axis && t.Dims[axis].Size >= 0 && t.Dims[axis].Size != want {
				return fmt.Errorf("%s %s has size %d on axis %d, want %d (as %s says)", kind, t, t.Dims[axis].Size, axis, want, ManifestFile)
			}
		}
		found[s.name] = t.DType
		return nil
	}
	for _, s := range inputs {
		if err := check("input", info.Inputs, s); err != nil {
			return nil, err
		}
	}
	for _, s := range outputs {
		if err := check("output", info.Outputs, s); err != nil {
			return nil, err
		}
	}
	return found, nil
}

var f32 = []onnx.DType{onnx.Float}

func (m *Model) checkTextEncoder(info *onnx.ModelInfo) error {
	D := int64(m.Manifest.TextWidth)
	types, err := expect(info,
		[]spec{{InInputIDs, []onnx.DType{onnx.Int32, onnx.Int64}, 2, nil}},
		[]spec{{OutLastHidden, f32, 3, map[int]int64{2: D}}})
	if err != nil {
		return err
	}
	m.InputIDsType = types[InInputIDs]
	return nil
}

func (m *Model) checkUNet(info *onnx.ModelInfo) error {
	C, D := int64(m.Manifest.LatentChannels), int64(m.Manifest.TextWidth)
	// timestep: float32 [batch] (diffusers) or int64 [1]; some exports
	// declare it as a scalar, so rank 0 is accepted too.
	var ts onnx.TensorInfo
	for _, in := range info.Inputs {
		if in.Name == InTimestep {
			ts = in
		}
	}
	trank := 1
	if ts.Rank() == 0 {
		trank = 0
	}
	types, err := expect(info,
		[]spec{
			{InSample, f32, 4, map[int]int64{1: C}},
			{InTimestep, []onnx.DType{onnx.Float, onnx.Int64}, trank, nil},
			{InContext, f32, 3, map[int]int64{2: D}},
		},
		[]spec{{OutNoise, f32, 4, map[int]int64{1: C}}})
	if err != nil {
		return err
	}
	m.TimestepType = types[InTimestep]
	return nil
}

func (m *Model) checkVAE(info *onnx.ModelInfo) error {
	C := int64(m.Manifest.LatentChannels)
	_, err := expect(info,
		[]spec{{InLatent, f32, 4, map[int]int64{1: C}}},
		[]spec{{OutImage, f32, 4, map[int]int64{1: 3}}})
	return err
}

func (m *Model) checkProjection(info *onnx.ModelInfo) error {
	E, D := int64(m.Manifest.Embedding.Dim), int64(m.Manifest.TextWidth)
	_, err := expect(info,
		[]spec{{InEmbedding, f32, 2, nil}},
		[]spec{{OutFaceTokens, f32, 3, map[int]int64{1: int64(m.Manifest.FaceTokens), 2: D}}})
	if err != nil {
		return err
	}
	in, _ := info.Input(InEmbedding)
	if in.Rank() != 2 {
		return nil // rank undeclared: nothing more to check before running it
	}
	if got := in.Dims[1].Size; got >= 0 && got != E {
		return fmt.Errorf("the projection takes %d-d embeddings but %s says embedding.dim is %d (space %q); the projection was trained for another embedder",
			got, ManifestFile, E, m.Manifest.Embedding.Space)
	}
	return nil
}

func specNames(ss []spec) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = fmt.Sprintf("%q", s.name)
	}
	return strings.Join(names, ", ")
}

func typeNames(ts []onnx.DType) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, " or ")
}

func describe(ts []onnx.TensorInfo) string {
	if len(ts) == 0 {
		return "none"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// Discover lists the model folders directly under root (folders holding a
// face0.json), sorted, for a node's model choice. Folders are not validated
// here (that reads every file); call Load on the chosen one. A missing root
// gives an empty list.
func Discover(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sdmodel: list models: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if st, err := os.Stat(filepath.Join(root, e.Name(), ManifestFile)); err == nil && !st.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
