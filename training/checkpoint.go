package training

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/face0/face0/ml/safetensors"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
)

// A checkpoint is a folder checkpoint-NNNNNNNNN (the step, 9 digits) holding:
const (
	WeightsFile   = "weights.safetensors"   // every weight, by its model name
	EMAFile       = "ema.safetensors"       // EMA of the trainable weights (absent without EMA)
	OptimizerFile = "optimizer.safetensors" // exp_avg.<name>, exp_avg_sq.<name> per trainable weight
	StateFile     = "state.json"            // step, data cursor, config: written last
)

// CheckpointFormat is state.json's format tag.
const CheckpointFormat = "face0-train-checkpoint/1"

const checkpointPrefix = "checkpoint-"

type checkpointState struct {
	Format string `json:"format"`
	State
	DataLen  int     `json:"data_len"`
	LastLoss float64 `json:"last_loss"`
	Backend  string  `json:"backend"`
	Config   Config  `json:"config"`
}

// SaveCheckpoint writes the run's full state to
// CheckpointDir/checkpoint-<step>: into a temporary folder first, renamed
// when complete, so a run killed mid-save leaves the previous checkpoint as
// the latest. Older checkpoints beyond KeepCheckpoints are removed.
func (t *Trainer) SaveCheckpoint() (string, error) {
	root := t.cfg.CheckpointDir
	if root == "" {
		return "", errors.New("training: no checkpoint_dir configured")
	}
	dir := filepath.Join(root, fmt.Sprintf("%s%09d", checkpointPrefix, t.state.Step))
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("training: checkpoint: %w", err)
	}
	meta := map[string]string{"format": CheckpointFormat, "step": strconv.Itoa(t.state.Step)}
	// Each file streams one tensor at a time out of the backend: a
	// full-size UNet's weights, EMA and moments are never copied whole.
	var ws, es, os_ []stored
	for i, s := range t.specs {
		ws = append(ws, stored{s.Name, s.Shape, t.params[i]})
	}
	for k, i := range t.trainable {
		s := t.specs[i]
		if len(t.ema) > 0 {
			es = append(es, stored{s.Name, s.Shape, t.ema[k]})
		}
		os_ = append(os_, stored{"exp_avg." + s.Name, s.Shape, t.m[k]}, stored{"exp_avg_sq." + s.Name, s.Shape, t.v[k]})
	}
	files := []struct {
		name string
		ts   []stored
	}{{WeightsFile, ws}, {EMAFile, es}, {OptimizerFile, os_}}
	for _, f := range files {
		if len(f.ts) == 0 {
			continue
		}
		if err := writeStored(filepath.Join(tmp, f.name), f.ts, meta, t.backend.HasSharedBuffers()); err != nil {
			return "", fmt.Errorf("training: checkpoint: %w", err)
		}
	}
	st := checkpointState{Format: CheckpointFormat, State: t.state, DataLen: t.data.Len(), Backend: t.Backend(), Config: t.cfg}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeSync(filepath.Join(tmp, StateFile), append(js, '\n')); err != nil {
		return "", fmt.Errorf("training: checkpoint: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("training: checkpoint: %w", err)
	}
	if d, err := os.Open(root); err == nil {
		d.Sync()
		d.Close()
	}
	return dir, t.prune()
}

// stored is one tensor of a checkpoint file, read out of the backend when
// its turn to be written comes.
type stored struct {
	name  string
	shape []int
	t     *tensors.Tensor
}

// writeStored writes ts, sorted by name (the same tensors always give the
// same bytes, as safetensors.Write), streaming. On a backend whose buffers
// are host memory (the pure-Go one) each tensor's bytes are written
// straight from its buffer; otherwise through one reused host buffer. No
// per-tensor garbage is left: the Go heap would otherwise grow by the
// checkpoint's size before the GC caught up.
func writeStored(path string, ts []stored, meta map[string]string, shared bool) error {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b stored) int { return strings.Compare(a.name, b.name) })
	hs := make([]safetensors.Header, len(ts))
	for i, x := range ts {
		hs[i] = safetensors.Header{Name: x.name, DType: safetensors.F32, Shape: x.shape}
	}
	var buf []byte
	return safetensors.WriteStream(path, hs, func(i int) ([]byte, error) {
		var out []byte
		err := ts[i].t.ConstFlatData(func(flat any) {
			f := flat.([]float32)
			if shared && littleEndian {
				// A view of the buffer itself: float32s are their little-endian bytes here.
				out = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
				return
			}
			buf = slices.Grow(buf[:0], 4*len(f))[:4*len(f)]
			for j, v := range f {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			out = buf
		})
		// On a device backend reading made a host copy that the tensor
		// keeps; the bytes are in buf now, so let it go.
		if ts[i].t.IsOnDevice(0) {
			ts[i].t.FinalizeLocal()
		}
		return out, err
	}, safetensors.WithMetadata(meta))
}

// littleEndian reports the host's byte order (safetensors is little-endian).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func writeSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Checkpoints lists the complete checkpoints under root, oldest first.
// Leftover temporary folders and folders without a state file (an
// interrupted save) are skipped.
func Checkpoints(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type ck struct {
		step int
		path string
	}
	var cks []ck
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, checkpointPrefix) {
			continue
		}
		step, err := strconv.Atoi(strings.TrimPrefix(name, checkpointPrefix))
		if err != nil {
			continue // checkpoint-N.tmp and strangers
		}
		p := filepath.Join(root, name)
		if _, err := os.Stat(filepath.Join(p, StateFile)); err != nil {
			continue
		}
		cks = append(cks, ck{step, p})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step < cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// LatestCheckpoint is the newest complete checkpoint under root, or "".
func LatestCheckpoint(root string) (string, error) {
	cks, err := Checkpoints(root)
	if err != nil || len(cks) == 0 {
		return "", err
	}
	return cks[len(cks)-1], nil
}

func (t *Trainer) prune() error {
	if t.cfg.KeepCheckpoints <= 0 {
		return nil
	}
	cks, err := Checkpoints(t.cfg.CheckpointDir)
	if err != nil {
		return err
	}
	for len(cks) > t.cfg.KeepCheckpoints {
		if err := os.RemoveAll(cks[0]); err != nil {
			return err
		}
		cks = cks[1:]
	}
	return nil
}

// Open resumes from the latest checkpoint in cfg.CheckpointDir, or starts a
// new run (seeded random weights) when there is none.
func Open(cfg Config, data Dataset) (*Trainer, error) {
	dir, err := LatestCheckpoint(cfg.CheckpointDir)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return New(cfg, data, nil)
	}
	return ResumeFrom(cfg, data, dir)
}

// Resume continues the run from the latest checkpoint in cfg.CheckpointDir.
func Resume(cfg Config, data Dataset) (*Trainer, error) {
	dir, err := LatestCheckpoint(cfg.CheckpointDir)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("training: no checkpoint in %q", cfg.CheckpointDir)
	}
	return ResumeFrom(cfg, data, dir)
}

// CheckpointConfig is the training config stored in checkpoint folder dir.
func CheckpointConfig(dir string) (Config, error) {
	js, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return Config{}, fmt.Errorf("training: %w", err)
	}
	var st checkpointState
	if err := json.Unmarshal(js, &st); err != nil {
		return Config{}, fmt.Errorf("training: %s: %w", filepath.Join(dir, StateFile), err)
	}
	return st.Config, nil
}

// ResumeFrom continues a run from checkpoint folder dir. cfg must agree
// with the checkpoint's config on everything that decides the data order
// and the random streams (model, seed, batch size, accumulation, face and
// text drop, schedule, adapter-only, EMA on/off); the learning rate and the
// other optimizer settings and checkpoint settings may change.
func ResumeFrom(cfg Config, data Dataset, dir string) (*Trainer, error) {
	js, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("training: resume: %w", err)
	}
	var st checkpointState
	if err := json.Unmarshal(js, &st); err != nil {
		return nil, fmt.Errorf("training: resume: %s: %w", filepath.Join(dir, StateFile), err)
	}
	if st.Format != CheckpointFormat {
		return nil, fmt.Errorf("training: resume: %s has format %q, want %q", dir, st.Format, CheckpointFormat)
	}
	if diff := streamDiff(st.Config, cfg); len(diff) > 0 {
		return nil, fmt.Errorf("training: resume: the config differs from checkpoint %s in %s; an exact resume needs them equal", dir, strings.Join(diff, ", "))
	}
	if data.Len() != st.DataLen {
		return nil, fmt.Errorf("training: resume: the dataset has %d examples, checkpoint %s was trained on %d", data.Len(), dir, st.DataLen)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	specs := cfg.Specs()
	w, err := model.LoadWeights(filepath.Join(dir, WeightsFile), specs)
	if err != nil {
		return nil, fmt.Errorf("training: resume: %w", err)
	}
	t, err := newTrainer(cfg, data, specs)
	if err != nil {
		return nil, err
	}
	t.params = toTensors(w, specs, nil)
	var trainSpecs, optSpecs []model.ParamSpec
	for _, i := range t.trainable {
		s := specs[i]
		trainSpecs = append(trainSpecs, s)
		optSpecs = append(optSpecs,
			model.ParamSpec{Name: "exp_avg." + s.Name, Shape: s.Shape},
			model.ParamSpec{Name: "exp_avg_sq." + s.Name, Shape: s.Shape})
	}
	opt, err := model.LoadWeights(filepath.Join(dir, OptimizerFile), optSpecs)
	if err != nil {
		return nil, fmt.Errorf("training: resume: %w", err)
	}
	for _, s := range trainSpecs {
		t.m = append(t.m, tensors.FromFlatDataAndDimensions(opt["exp_avg."+s.Name].Data, s.Shape...))
		t.v = append(t.v, tensors.FromFlatDataAndDimensions(opt["exp_avg_sq."+s.Name].Data, s.Shape...))
		opt["exp_avg."+s.Name].Data, opt["exp_avg_sq."+s.Name].Data = nil, nil // copied: let go
	}
	if cfg.EMADecay > 0 {
		ema, err := model.LoadWeights(filepath.Join(dir, EMAFile), trainSpecs)
		if err != nil {
			return nil, fmt.Errorf("training: resume: %w", err)
		}
		for _, s := range trainSpecs {
			t.ema = append(t.ema, tensors.FromFlatDataAndDimensions(ema[s.Name].Data, s.Shape...))
			ema[s.Name].Data = nil
		}
	}
	t.state = st.State
	return t, nil
}

// streamDiff names the fields of a and b that decide the run's data order,
// random draws or tensor set and differ.
func streamDiff(a, b Config) []string {
	var d []string
	// An empty output is "eps" (checkpoints from before the field).
	a.Model.Output, b.Model.Output = a.Model.OutputKind(), b.Model.OutputKind()
	if a.Model != b.Model {
		d = append(d, fmt.Sprintf("model (%+v vs %+v)", a.Model, b.Model))
	}
	if ua, ub := unetJSON(a.UNet), unetJSON(b.UNet); ua != ub {
		d = append(d, fmt.Sprintf("unet (%s vs %s)", ua, ub))
	}
	type f struct {
		name string
		x, y any
	}
	for _, x := range []f{
		{"seed", a.Seed, b.Seed},
		{"batch_size", a.BatchSize, b.BatchSize},
		{"grad_accum", a.GradAccum, b.GradAccum},
		{"face_drop_prob", a.FaceDropProb, b.FaceDropProb},
		{"text_drop_prob", a.TextDropProb, b.TextDropProb},
		{"loss_weight", lossWeightKind(a.LossWeight), lossWeightKind(b.LossWeight)},
		{"adapter_only", a.AdapterOnly, b.AdapterOnly},
		{"ema (on/off)", a.EMADecay > 0, b.EMADecay > 0},
		{"num_train_timesteps", a.NumTrainTimesteps, b.NumTrainTimesteps},
		{"beta_start", a.BetaStart, b.BetaStart},
		{"beta_end", a.BetaEnd, b.BetaEnd},
		{"beta_schedule", a.BetaSchedule, b.BetaSchedule},
	} {
		if x.x != x.y {
			d = append(d, fmt.Sprintf("%s (%v vs %v)", x.name, x.x, x.y))
		}
	}
	return slices.Clip(d)
}

// lossWeightKind resolves the empty LossWeight (checkpoints from before the
// field) to "eps".
func lossWeightKind(w string) string {
	if w == "" {
		return LossWeightEps
	}
	return w
}

func unetJSON(c *sd.Config) string {
	if c == nil {
		return "none"
	}
	b, _ := json.Marshal(c)
	return string(b)
}
