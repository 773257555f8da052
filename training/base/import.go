package base

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// ImportFile is the provenance Import writes into the model folder.
const ImportFile = "face0/import.json"

// ImportOptions adjust Import.
type ImportOptions struct {
	// Name is face0.json's name [the folder's base name].
	Name string
	// FP16 writes the UNet in float16 (half the file and memory; for GPUs,
	// see sd.ExportOptions.Half). The text encoder and VAE stay float32.
	FP16 bool
	// EMA chooses a single-file checkpoint's UNet copy when it has two.
	EMA ckpt.EMA
	// Logf reports progress (nil: quiet).
	Logf func(format string, args ...any)
}

// ImportInfo is face0/import.json: where the model came from.
type ImportInfo struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	Source  string    `json:"source"`
	Kind    string    `json:"kind"`
	// UNetWeights is "ema" or "plain" for a single file with an EMA copy.
	UNetWeights string `json:"unet_weights,omitempty"`
	// SourceDTypes counts the source tensors by element type.
	SourceDTypes string `json:"source_dtypes,omitempty"`
	// UNetPrecision is the exported UNet's: "float32" or "float16".
	UNetPrecision string `json:"unet_precision"`
	// Ignored counts the source's keys that are no weight of the three
	// networks (schedule buffers, the UNet copy not chosen...); Unknown
	// names keys outside every known part.
	Ignored int      `json:"ignored_keys,omitempty"`
	Unknown []string `json:"unknown_keys,omitempty"`
	Weights struct {
		UNet, VAE, TextEncoder int
	} `json:"weights"`
}

// Import turns an SD 1.x base (any kind Open takes: a single-file
// checkpoint, a diffusers folder, or a face0 model folder, e.g. to make an
// fp16 copy) into a face0 model folder at dst: the UNet, text encoder and
// VAE decoder as ONNX, the VAE encoder for training, CLIP's tokenizer, the
// scheduler config, each network's config.json, face0.json and
// face0/import.json. The model samples from text at once; its face
// projection is untrained (face0.json says so, and the sampler refuses a
// face) until one is attached (AttachProjection). It is a valid base for
// training (Open reads it back). dst must not exist; the folder is written
// beside it and renamed into place once it checks out, so a failed import
// leaves nothing behind.
func Import(src, dst string, o ImportOptions) (*ImportInfo, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err == nil {
		return nil, fmt.Errorf("import: %s already exists: remove it or choose another name", abs)
	}
	var bm *Model
	if st, err := os.Stat(src); err == nil && !st.IsDir() {
		bm, err = OpenCheckpoint(src, CheckpointOptions{EMA: o.EMA})
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
	} else if bm, err = Open(src); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	info := &ImportInfo{Format: "face0-import/1", Created: time.Now().UTC().Round(time.Second), Source: bm.Dir, Kind: bm.Kind, UNetPrecision: "float32"}
	if o.FP16 {
		info.UNetPrecision = "float16"
	}
	if cs, ok := bm.src.(*checkpointSource); ok {
		info.SourceDTypes, info.Ignored, info.Unknown = cs.dtypes, cs.ignored, cs.unknown
		if cs.usedEMA {
			info.UNetWeights = "ema"
		} else {
			info.UNetWeights = "plain"
		}
		for _, k := range cs.unknown {
			logf("import: %s: key %s belongs to no SD 1.x network; left out", bm.Dir, k)
		}
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", abs, os.Getpid())
	_ = os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)

	// The UNet first: the largest, and its weights are let go as they go
	// into the graph (sd.ExportOptions.Consume).
	t0 := time.Now()
	u, err := bm.RawUNetWeights()
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	info.Weights.UNet = weightCount(u)
	if err := sd.WriteONNXWith(tmp, bm.UNet, u, sd.ExportOptions{Half: o.FP16, Consume: true}); err != nil {
		return nil, fmt.Errorf("import: the UNet: %w", err)
	}
	u = nil
	release()
	logf("import: UNet (%d weights, %s) in %.1f s", info.Weights.UNet, info.UNetPrecision, time.Since(t0).Seconds())

	t0 = time.Now()
	tw, err := bm.TextWeights()
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	info.Weights.TextEncoder = weightCount(tw)
	if err := textenc.WriteONNX(tmp, bm.Text, tw); err != nil {
		return nil, fmt.Errorf("import: the text encoder: %w", err)
	}
	tw = nil
	release()
	logf("import: text encoder (%d weights) in %.1f s", info.Weights.TextEncoder, time.Since(t0).Seconds())

	t0 = time.Now()
	vw, err := bm.VAEWeights()
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	info.Weights.VAE = weightCount(vw)
	if err := vae.WriteONNX(tmp, bm.VAE, vw); err != nil {
		return nil, fmt.Errorf("import: the VAE: %w", err)
	}
	vw = nil
	release()
	logf("import: VAE decoder and encoder (%d weights) in %.1f s", info.Weights.VAE, time.Since(t0).Seconds())

	for _, c := range []struct {
		file string
		v    any
	}{{modelUNetConfig, bm.UNet}, {modelTextConfig, bm.Text}, {ModelVAEConfig, bm.VAE}} {
		if err := writeJSON(filepath.Join(tmp, filepath.FromSlash(c.file)), c.v); err != nil {
			return nil, err
		}
	}
	if err := bm.WriteTokenizer(tmp); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	sched := filepath.Join(tmp, filepath.FromSlash(sdmodel.SchedulerFile))
	if bm.HasScheduler {
		b, err := os.ReadFile(bm.Path(SchedulerConfig))
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if err := writeFile(sched, b); err != nil {
			return nil, err
		}
	} else if err := writeJSON(sched, sdmodel.SD15Scheduler()); err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(abs)
	}
	var man sdmodel.Manifest
	man.Format = sdmodel.ManifestFormat
	man.Name = name
	man.Projection = sdmodel.ProjectionUntrained
	man.FaceTokens = 3
	man.ContextLength = bm.ContextLength()
	man.FaceTokenStart = man.ContextLength - man.FaceTokens
	man.TextWidth = bm.Text.HiddenSize
	man.PadToken = bm.EndToken
	man.LatentChannels = bm.VAE.LatentChannels
	man.VAEScaleFactor = bm.VAE.Downscale()
	man.LatentScale = bm.VAE.ScalingFactor
	man.SampleSize = bm.VAE.SampleSize
	if man.SampleSize <= 0 {
		man.SampleSize = 512
	}
	man.Guidance.W, man.Guidance.C, man.Guidance.A = 7.5, 1, 0
	if err := writeJSON(filepath.Join(tmp, sdmodel.ManifestFile), man); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(tmp, filepath.FromSlash(ImportFile)), info); err != nil {
		return nil, err
	}
	// ml/onnx writes through temporary files (mode 0600); whoever runs
	// the server reads the folder.
	_ = filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_ = os.Chmod(p, 0o644)
		}
		return nil
	})
	if err := sdmodel.Validate(tmp); err != nil {
		return nil, fmt.Errorf("import: the written folder does not check out: %w", err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return info, nil
}

// release returns a network's freed memory to the system before the next
// one is read: a full-size import otherwise keeps the UNet's gigabytes
// as free heap.
func release() {
	runtime.GC()
	debug.FreeOSMemory()
}

func weightCount(w model.Weights) int {
	n := 0
	for _, t := range w {
		n += len(t.Data)
	}
	return n
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
