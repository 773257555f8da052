package face0

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/face0/face0/internal/config"
	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/ml/sdmodel"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// MixtureFile is where a model folder may keep the distribution of its
// embedding space (ml/face0's Mixture JSON, fitted on the training set's
// embeddings), for RandomEmbedding. Without it, random embeddings are
// N(0, I) directions normalised to unit length.
const MixtureFile = "face0/embedding_mixture.json"

// ModelsEnv overrides the models folder the pack lists when the host asks
// for node specs. Describe carries no folders, so until an execution has
// told the plugin the host's models folder, the choices come from
// $FACE0_MODELS, else $FACE0_HOME/models (config.Home).
const ModelsEnv = config.ModelsEnv

// NoProjectionSpace is the embedding space the pack declares for a model
// without a trained projection: no face embedder produces it, so the
// editor and the validator refuse a face link to such a model.
const NoProjectionSpace = "untrained-projection"

// seenModels is the models folder of the latest request from the host,
// which is the truth once known.
var seenModels atomic.Pointer[string]

func noteDirs(d *pb.Dirs) {
	if m := d.GetModels(); m != "" {
		seenModels.Store(&m)
	}
}

// modelsRoot is the folder model choices are listed from.
func modelsRoot() string {
	if p := seenModels.Load(); p != nil {
		return *p
	}
	return config.Models()
}

// modelChoices lists the model folders (those holding a face0.json) for the
// model inputs' enum, freshly on every Describe. Broken folders are listed
// too: choosing one gives an error that says what is wrong with it, which
// helps more than a model silently missing from the list.
func modelChoices() []string {
	names, err := sdmodel.Discover(modelsRoot())
	if err != nil {
		return nil
	}
	return names
}

// modelSpaces maps each model to its embedding space, the type parameter of
// its FACE_EMBEDDING ports. A folder whose manifest cannot be read maps to
// nothing, so its ports accept any space and the run reports the problem.
func modelSpaces() map[string]string {
	root := modelsRoot()
	out := map[string]string{}
	for _, n := range modelChoices() {
		m, err := readManifest(filepath.Join(root, n))
		switch {
		case err != nil:
		case !m.HasFace():
			// No embedder's space matches: linking a face embedding to
			// this model is refused before the run, naming why.
			out[n] = NoProjectionSpace
		case m.Embedding.Space != "":
			out[n] = m.Embedding.Space
		}
	}
	return out
}

// readManifest reads face0.json alone, cheaply, for the spaces table.
func readManifest(dir string) (sdmodel.Manifest, error) {
	var man sdmodel.Manifest
	raw, err := os.ReadFile(filepath.Join(dir, sdmodel.ManifestFile))
	if err != nil {
		return man, err
	}
	err = json.Unmarshal(raw, &man)
	return man, err
}

// model is a checked, loaded model folder. Its ONNX sessions live in
// ml/ort's shared cache (acquired per run), so they stay warm between runs
// and are closed only when the memory budget needs the room.
type model struct {
	name  string
	stamp string // identity of the folder's files when it was checked
	*sdmodel.Model

	mixOnce sync.Once
	mix     *f0.Mixture
	mixErr  error

	emptyMu sync.Mutex
	empty   []float32 // the empty prompt's encoding, computed once

	projMu    sync.Mutex
	projCache []projEntry // recent projections, oldest first; results are never modified

	schedMu  sync.Mutex
	schedCfg map[sched.Kind]sched.Config // scheduler_config.json read per sampler kind
}

// schedulerConfig reads scheduler_config.json for a sampler kind once (the
// folder's stamp makes a changed file load a new model).
func (m *model) schedulerConfig(kind sched.Kind) (sched.Config, error) {
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	if c, ok := m.schedCfg[kind]; ok {
		return c, nil
	}
	c, err := sched.LoadConfig(m.Path(sdmodel.SchedulerFile), kind)
	if err != nil {
		return c, fmt.Errorf("model %q: %w", m.name, err)
	}
	if m.schedCfg == nil {
		m.schedCfg = map[sched.Kind]sched.Config{}
	}
	m.schedCfg[kind] = c
	return c, nil
}

var models = struct {
	sync.Mutex
	m map[string]*model // by folder path
}{m: map[string]*model{}}

// resolveModel turns a model name into its folder, refusing anything that is
// not a plain folder name inside the models folder.
func resolveModel(dirs *pb.Dirs, name string) (string, error) {
	noteDirs(dirs)
	root := dirs.GetModels()
	if root == "" {
		return "", errors.New("the host gave no models folder")
	}
	if name == "" {
		return "", fmt.Errorf("no model chosen; put a model folder in %s (face0 models make-tiny %s/tiny makes a tiny test model)", root, root)
	}
	if name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, `/\`+"\x00") {
		return "", fmt.Errorf("model %q: give the name of a folder inside the models folder, not a path", name)
	}
	dir := filepath.Join(root, name)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		have, _ := sdmodel.Discover(root)
		return "", fmt.Errorf("model %q not found in the models folder %s (have %v)", name, root, have)
	}
	return dir, nil
}

// getModel returns the model, checking the folder (every file present, each
// ONNX file's inputs, outputs and sizes against face0.json) the first time
// and again whenever a file in it changed.
func getModel(dirs *pb.Dirs, name string) (*model, error) {
	dir, err := resolveModel(dirs, name)
	if err != nil {
		return nil, err
	}
	stamp, err := folderStamp(dir)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", name, err)
	}
	models.Lock()
	defer models.Unlock()
	if m, ok := models.m[dir]; ok && m.stamp == stamp {
		return m, nil
	}
	sm, err := sdmodel.Load(dir)
	if err != nil {
		// Failed checks are not remembered: fixing the folder is enough.
		return nil, fmt.Errorf("model %q is not usable: %s", name, strings.TrimPrefix(err.Error(), "sdmodel: "))
	}
	m := &model{name: name, stamp: stamp, Model: sm}
	models.m[dir] = m
	return m, nil
}

// stampFiles are the files whose identity makes a model folder's stamp:
// everything a run reads (an external-data side file is replaced together
// with its .onnx file, which changes the .onnx file's own stamp).
var stampFiles = []string{
	sdmodel.ManifestFile, sdmodel.TextEncoderFile, sdmodel.UNetFile, sdmodel.VAEDecoderFile, sdmodel.ProjectionFile,
	sdmodel.VocabFile, sdmodel.MergesFile, sdmodel.SchedulerFile, MixtureFile,
}

// folderStamp identifies a model folder's content by each file's size and
// modification time: cheap (nine stats, no file is read, about 20 µs) and it
// changes when a file is replaced, which re-checks the folder and changes
// the nodes' cache keys. A missing file is part of the stamp too.
func folderStamp(dir string) (string, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s is not a folder", dir)
	}
	h := sha256.New()
	for _, f := range stampFiles {
		if st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00%d\n", f, st.Size(), st.ModTime().UnixNano())
		} else {
			fmt.Fprintf(h, "%s\x00missing\n", f)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// modelFingerprint adds the model folder's stamp to the cache key of every
// node that reads a model, so that replacing weights re-runs them instead of
// serving results computed with the old ones.
func modelFingerprint(_ context.Context, dirs *pb.Dirs, in map[string]*pb.Value) ([]byte, error) {
	noteDirs(dirs)
	name := ""
	if v, ok := in["model"]; ok && !value.IsNull(v) {
		name, _ = value.AsString(v)
	}
	dir, err := resolveModel(dirs, name)
	if err != nil {
		return []byte("missing:" + err.Error()), nil
	}
	stamp, err := folderStamp(dir)
	if err != nil {
		return []byte("unreadable:" + err.Error()), nil
	}
	return []byte(stamp), nil
}

// session acquires a component's onnxruntime session on device from the
// shared cache.
func (m *model) session(file, device string) (*ort.Session, func(), error) {
	s, release, err := ort.Shared().Acquire(m.Path(file), provider(device))
	if err != nil {
		return nil, nil, fmt.Errorf("model %q: %w", m.name, err)
	}
	return s, release, nil
}

// needFace refuses a face for a model without a trained projection (an SD
// 1.x checkpoint just imported), saying how to get one.
func (m *model) needFace(what string) error {
	if m.Manifest.HasFace() {
		return nil
	}
	return fmt.Errorf("model %q has no trained face projection (%s says projection %q: it is a Stable Diffusion checkpoint imported as it is), so %s cannot use a face: sample without a face embedding, or train a projection for it (face0 train DATASET --base %s --adapter-only) and attach it (face0 models attach-projection)",
		m.name, sdmodel.ManifestFile, m.Manifest.Projection, what, m.Dir)
}

// mixture loads the model's embedding distribution once; nil when the model
// ships none.
func (m *model) mixture() (*f0.Mixture, error) {
	m.mixOnce.Do(func() {
		p := m.Path(MixtureFile)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return
		}
		m.mix, m.mixErr = f0.LoadMixture(p)
		if m.mixErr == nil && m.mix.Dim != m.Manifest.Embedding.Dim {
			m.mixErr = fmt.Errorf("%s: the mixture is %d-d but %s says embedding.dim is %d", p, m.mix.Dim, sdmodel.ManifestFile, m.Manifest.Embedding.Dim)
		}
		if m.mixErr != nil {
			m.mixErr = fmt.Errorf("model %q: %w", m.name, m.mixErr)
		}
	})
	return m.mix, m.mixErr
}
