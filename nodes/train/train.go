// Package train is the built-in train pack: the Train node prepares a
// dataset folder (images with captions and face embeddings), trains a Face0
// model on it with GoMLX, and writes the model folder into the models
// directory, where the face0 pack's nodes can choose it. See README.md.
package train

import (
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/face0/face0/internal/config"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
	"github.com/face0/face0/training/base"
	"github.com/face0/face0/training/data"
	"github.com/face0/face0/training/pipeline"
	"github.com/face0/face0/training/textclip"
)

// DatasetsEnv lists extra folders (separated like PATH) that the Train
// node may read datasets from by absolute path. Without it, datasets must
// be inside the host's input folder: a workflow is untrusted input (anyone
// who can queue one on a server could otherwise point Train at any folder
// the server can read).
const DatasetsEnv = "FACE0_TRAIN_DATASETS"

// Pack returns the built-in train pack.
func Pack(version string) sdk.Pack {
	return sdk.Pack{Name: "train", Version: version, Nodes: []sdk.Node{
		sdk.Func("Train", trainNode, sdk.Category("face0/training"), sdk.DisplayName("Train Face0 Model"),
			// It writes the model folder: never from the cache. Each run
			// leaves the folder in this run's models folder; an unchanged
			// run resumes from its last checkpoint (no steps left) and
			// only exports again.
			sdk.NonDeterministic(), sdk.SideEffects(nil), sdk.OutputNode(), sdk.Choices("base", baseChoices),
			sdk.Describe("Trains a Face0 model (projection MLP + denoiser, the paper's objective) on a folder of captioned images with face embeddings, "+
				"and writes it into the models folder under model_name. The dataset is encoded once and cached with the run; "+
				"checkpoints let a cancelled or interrupted run resume.")),
	}}
}

type trainIn struct {
	Dataset         string  `face0:"dataset,default=synthfaces/train,maxlen=4096" doc:"dataset folder inside the input folder (absolute paths only inside the input folder or a folder listed in $FACE0_TRAIN_DATASETS): metadata.jsonl, or images with .txt captions"`
	Base            string  `face0:"base,default=none" doc:"the Stable Diffusion 1.x model to fine-tune, a diffusers folder (unet/, vae/, text_encoder/, tokenizer/, .safetensors weights) in the models folder: its UNet and the projection are trained, its VAE and text encoder stay frozen (the paper's setting; learning rate 2e-5 and text drop 0 are the paper's); none trains the tiny transformer from scratch"`
	AdapterOnly     bool    `face0:"adapter_only,default=false" doc:"with a base model, freeze its UNet and train the face projection alone (for small GPUs)"`
	Steps           int     `face0:"steps,min=1,max=10000000,default=500" doc:"total optimizer steps of the run (a resumed run counts the steps already done)"`
	LR              float64 `face0:"learning_rate,min=0.0000001,max=1,step=0.0001,default=0.001" doc:"AdamW learning rate"`
	Batch           int     `face0:"batch_size,min=1,max=1024,default=16"`
	Name            string  `face0:"model_name,default=trained,maxlen=100" doc:"the model folder written into the models folder (replaced when training completes)"`
	CheckpointEvery int     `face0:"checkpoint_every,min=1,max=10000000,default=100" doc:"steps between checkpoints; one is also written at the end and when cancelled"`
	Resume          bool    `face0:"resume,default=true" doc:"continue from the run's latest checkpoint; off starts over"`
	TextDrop        float64 `face0:"text_drop,min=0,max=1,step=0.01,default=0.1" doc:"probability that a caption is replaced by the empty prompt while training, so the unconditional and face-only guidance branches are trained (a model trained from scratch has never seen the empty prompt otherwise; the paper fine-tunes SD and never drops the text); 0: never"`
	Seed            int64   `face0:"seed,min=0,max=9007199254740991,default=0" doc:"initial weights, data order and noise"`
	Preset          string  `face0:"preset,enum=tiny|small,default=tiny" doc:"tiny: width 64, 2 blocks; small: width 128, 4 blocks"`
	Face            string  `face0:"face_embedding,enum=auto|precomputed|detect|synthfaces-id,default=auto" doc:"synthfaces-id: the synthfaces identity embedder on each whole image (what the shipped tiny model uses; EmbedFace's synthfaces-id-64 at sampling time); precomputed: the metadata's embedding (synthfaces' identity_embedding); detect: largest face, Face0 crop, face-api 128-d; auto: synthfaces-id on a synthfaces dataset, precomputed for other metadata embeddings, else detect (always a space an EmbedFace model gives at sampling time)"`
	NoFace          string  `face0:"no_face,enum=zero|skip,default=zero" doc:"images without a face: kept with the face tokens zeroed, or skipped"`
	TextPretrain    int     `face0:"text_pretrain,min=-1,max=1000000,default=-1" doc:"steps of contrastive (CLIP-style) pretraining of the from-scratch text encoder on the dataset's caption-image pairs before it is frozen (a model trained from scratch needs it to follow captions); -1: 500 from scratch as face0 train, none with a base, whose encoder is pretrained; 0 keeps random weights"`
	ImageSize       int     `face0:"image_size,min=8,max=1024,step=8,default=32" doc:"images are fitted to this square side (with a base model, a multiple of its VAE's 8× downscale; SD 1.x was trained at 512)"`
}

type trainOut struct {
	Model   string  `face0:"model" doc:"the written model's name (a folder in the models folder)"`
	Summary sdk.Raw `face0:"summary,type=UI,ui"`
}

// runs serialises runs of one model name in this process: a run queued
// right after a cancelled one waits while that one writes its checkpoint.
var runs sync.Map // model name -> chan struct{} (capacity 1: the lock)

func trainNode(ctx *sdk.Context, in trainIn) (trainOut, error) {
	models := ctx.Dirs.GetModels()
	if models == "" {
		return trainOut{}, errors.New("the host gave no models folder")
	}
	if err := checkName(in.Name); err != nil {
		return trainOut{}, err
	}
	ds, err := resolveDataset(ctx.Dirs, in.Dataset)
	if err != nil {
		return trainOut{}, err
	}
	l, _ := runs.LoadOrStore(in.Name, make(chan struct{}, 1))
	lock := l.(chan struct{})
	select {
	case lock <- struct{}{}:
	default:
		ctx.Logf("waiting for the previous run of model %q to finish", in.Name)
		select {
		case lock <- struct{}{}:
		case <-ctx.Done():
			return trainOut{}, ctx.Err()
		}
	}
	defer func() { <-lock }()

	out := filepath.Join(models, in.Name)
	baseDir := ""
	if in.Base != "" && in.Base != "none" {
		if err := checkName(in.Base); err != nil {
			return trainOut{}, fmt.Errorf("base: %w", err)
		}
		baseDir = filepath.Join(models, in.Base)
	}
	lastLog := time.Time{}
	lastPreview := time.Time{}
	opts := pipeline.Options{
		Dataset: ds, Out: out, Name: in.Name, Base: baseDir, AdapterOnly: in.AdapterOnly,
		Steps: in.Steps, Batch: in.Batch, LR: in.LR, Seed: uint64(in.Seed), TextDrop: textDrop(in.TextDrop),
		CheckpointEvery: in.CheckpointEvery, Resume: in.Resume, Preset: in.Preset,
		Prep: data.Options{
			Latent: data.Latent{Size: in.ImageSize, Factor: factorFor(in.ImageSize)},
			Face:   in.Face, NoFace: in.NoFace, Models: models,
			TextPretrain: textclip.Options{Steps: pipeline.TextPretrainSteps(in.TextPretrain, baseDir != "")},
		},
		Logf: ctx.Logf,
		OnProgress: func(p pipeline.Progress) {
			switch p.Phase {
			case "prepare":
				ctx.Progress(int64(p.Done), int64(p.Total))
			case "train":
				ctx.Progress(int64(p.Done), int64(p.Total))
				if time.Since(lastLog) > 5*time.Second || p.Done == p.Total || p.Checkpoint != "" {
					lastLog = time.Now()
					ctx.Logf("step %d/%d loss %.4f (smoothed %.4f) %.2f steps/s ETA %s", p.Done, p.Total, p.Loss, p.Smoothed, p.StepsPerSec, p.ETA)
				}
			case "export":
				ctx.Logf("exporting the model to %s", out)
			}
		},
		OnPlot: func(img image.Image) {
			if time.Since(lastPreview) > time.Second {
				lastPreview = time.Now()
				ctx.Preview(img)
			}
		},
	}
	res, err := pipeline.Run(ctx, opts)
	if err != nil {
		return trainOut{}, err
	}
	last := 0.0
	if n := len(res.Losses); n > 0 {
		last = res.Losses[n-1]
	}
	summary, err := value.FromJSON([]any{map[string]any{
		"model": in.Name, "steps": res.Steps, "examples": res.Prepared.Count, "skipped": len(res.Prepared.Problems),
		"loss": last, "eval_start": res.EvalStart, "eval_end": res.EvalEnd, "seconds_per_step": res.StepSeconds,
	}})
	if err != nil {
		return trainOut{}, err
	}
	return trainOut{Model: in.Name, Summary: summary}, nil
}

// factorFor is the space-to-depth factor giving an 8×8 latent where it can
// (the trainer's fast size), else the largest of 4, 2, 1 that divides.
func factorFor(size int) int {
	if size%8 == 0 && size/8 >= 1 && size/8 <= 4 {
		return size / 8
	}
	for _, f := range []int{4, 2} {
		if size%f == 0 {
			return f
		}
	}
	return 1
}

// baseChoices lists "none" and the diffusers folders (with a
// unet/config.json) in the models folder, for the base input's enum.
func baseChoices() []string {
	root := config.Models()
	out := []string{"none"}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, e.Name(), filepath.FromSlash(base.UNetConfig))); err == nil && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func checkName(name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\:`+"\x00") {
		return fmt.Errorf("model_name %q: give a plain folder name (it is created inside the models folder)", name)
	}
	return nil
}

// resolveDataset maps the dataset input to a folder the node may read: a
// relative path inside the input folder, or an absolute one inside the
// input folder or a $FACE0_TRAIN_DATASETS folder. Symbolic links are
// resolved before the check, so a link cannot lead out.
func resolveDataset(dirs *pb.Dirs, p string) (string, error) {
	if p == "" {
		return "", errors.New("dataset: give a folder")
	}
	input := dirs.GetInput()
	var roots []string
	if input != "" {
		roots = append(roots, input)
	}
	for _, r := range filepath.SplitList(os.Getenv(DatasetsEnv)) {
		if r != "" {
			roots = append(roots, r)
		}
	}
	path := p
	if !filepath.IsAbs(p) {
		if input == "" {
			return "", errors.New("dataset: a relative path needs the host's input folder, and there is none")
		}
		path = filepath.Join(input, p)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("dataset %q: %w", p, err)
	}
	for _, r := range roots {
		rr, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(rr, real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return real, nil
		}
	}
	return "", fmt.Errorf("dataset %q is outside the input folder %s; put it there, or list its parent in $%s where the server starts", p, input, DatasetsEnv)
}

// textDrop maps the input (0: never) to pipeline.Options.TextDrop (0: the
// default, negative: never).
func textDrop(p float64) float64 {
	if p <= 0 {
		return -1
	}
	return p
}
