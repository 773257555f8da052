// Package sdmodel describes, generates and checks Face0 model folders: Stable
// Diffusion 1.x in the diffusers ONNX layout plus the Face0 projection and a
// face0.json manifest.
//
//	text_encoder/model.onnx   input_ids int32[batch,sequence] → last_hidden_state float32[batch,sequence,D], pooler_output float32[batch,D]
//	unet/model.onnx           sample float32[batch,4,height,width], timestep float32[batch], encoder_hidden_states float32[batch,sequence,D] → out_sample float32[batch,4,height,width]
//	vae_decoder/model.onnx    latent_sample float32[batch,4,height,width] → sample float32[batch,3,8·height,8·width]
//	face0/projection.onnx     embedding float32[batch,E] → tokens float32[batch,3,D]
//	tokenizer/vocab.json, tokenizer/merges.txt
//	scheduler/scheduler_config.json
//	face0.json
//
// Generate writes such a folder with a tiny, seeded-random network of the
// same layout (for tests and as the shape of the shipped default model); Load
// and Validate check any folder, real SD 1.x exports included.
package sdmodel

// File names inside a model folder, as in the diffusers ONNX layout.
const (
	ManifestFile    = "face0.json"
	TextEncoderFile = "text_encoder/model.onnx"
	UNetFile        = "unet/model.onnx"
	VAEDecoderFile  = "vae_decoder/model.onnx"
	ProjectionFile  = "face0/projection.onnx"
	VocabFile       = "tokenizer/vocab.json"
	MergesFile      = "tokenizer/merges.txt"
	SchedulerFile   = "scheduler/scheduler_config.json"
)

// Tensor names of the SD 1.x ONNX export (diffusers'
// convert_stable_diffusion_checkpoint_to_onnx.py) and of the projection.
const (
	InInputIDs      = "input_ids"
	OutLastHidden   = "last_hidden_state"
	OutPooled       = "pooler_output"
	InSample        = "sample"
	InTimestep      = "timestep"
	InContext       = "encoder_hidden_states"
	OutNoise        = "out_sample"
	InLatent        = "latent_sample"
	OutImage        = "sample"
	InEmbedding     = "embedding"
	OutFaceTokens   = "tokens"
	ManifestFormat  = "face0-model/1"
	DefaultSpace    = "faceapi-128"
	DefaultEmbedDim = 128
)

// Manifest is face0.json: what the sampler needs to know beyond the ONNX
// files themselves.
type Manifest struct {
	Format string `json:"format"`
	Name   string `json:"name"`
	// Projection is ProjectionUntrained for a model without a trained
	// face projection (an SD 1.x checkpoint just imported): it samples
	// from text alone, its embedding fields are empty, and the sampler
	// refuses a face until one is attached. Empty (every older manifest)
	// or ProjectionTrained: face0/projection.onnx is there and trained.
	Projection string `json:"projection,omitempty"`
	// Embedding is the face embedding space the projection was trained on;
	// the sampler refuses embeddings from another space.
	Embedding struct {
		Space string `json:"space"`
		Dim   int    `json:"dim"`
	} `json:"embedding"`
	// FaceTokens projected vectors replace context positions
	// FaceTokenStart..FaceTokenStart+FaceTokens-1 (the paper: the last three
	// of 77, 0-based 74-76).
	FaceTokens     int `json:"face_tokens"`
	FaceTokenStart int `json:"face_token_start"`
	TextWidth      int `json:"text_width"`
	ContextLength  int `json:"context_length"`
	// PadToken is the id prompts are padded with: the end token for
	// diffusers-trained models, 0 for openai/CLIP-style ones.
	PadToken       int     `json:"pad_token"`
	LatentChannels int     `json:"latent_channels"`
	VAEScaleFactor int     `json:"vae_scale_factor"`
	LatentScale    float64 `json:"latent_scale"`
	// SampleSize is the default image side in pixels.
	SampleSize int `json:"sample_size"`
	// Guidance defaults: eps = w·eps_cond + (1-w)·eps_uncond with
	// eps_cond = c·eps(d,f) + (1-c)·(a·eps(f) + (1-a)·eps(d)).
	Guidance struct {
		W float64 `json:"w"`
		C float64 `json:"c"`
		A float64 `json:"a"`
	} `json:"guidance"`
}

// Values of Manifest.Projection.
const (
	ProjectionTrained   = "trained"
	ProjectionUntrained = "untrained"
)

// HasFace reports whether the model has a trained face projection.
func (m Manifest) HasFace() bool { return m.Projection != ProjectionUntrained }

// SchedulerConfig is the subset of diffusers' scheduler_config.json the
// samplers use.
type SchedulerConfig struct {
	ClassName         string    `json:"_class_name"`
	NumTrainTimesteps int       `json:"num_train_timesteps"`
	BetaStart         float64   `json:"beta_start"`
	BetaEnd           float64   `json:"beta_end"`
	BetaSchedule      string    `json:"beta_schedule"`
	StepsOffset       int       `json:"steps_offset"`
	TimestepSpacing   string    `json:"timestep_spacing"`
	SetAlphaToOne     bool      `json:"set_alpha_to_one"`
	ClipSample        bool      `json:"clip_sample"`
	PredictionType    string    `json:"prediction_type"`
	SkipPRKSteps      bool      `json:"skip_prk_steps"`
	TrainedBetas      []float64 `json:"trained_betas"`
}

// SD15Scheduler is Stable Diffusion 1.x's scheduler configuration (PNDM
// with PLMS steps only; DDIM reads the same keys).
func SD15Scheduler() SchedulerConfig {
	return SchedulerConfig{
		ClassName:         "PNDMScheduler",
		NumTrainTimesteps: 1000,
		BetaStart:         0.00085,
		BetaEnd:           0.012,
		BetaSchedule:      "scaled_linear",
		StepsOffset:       1,
		TimestepSpacing:   "leading",
		SetAlphaToOne:     false,
		ClipSample:        false,
		PredictionType:    "epsilon",
		SkipPRKSteps:      true,
	}
}

// Config sizes a generated model. Zero fields take TinyConfig's values.
type Config struct {
	Name string
	Seed uint64

	// Text encoder (CLIP-like).
	TextWidth     int // D, the context width the UNet cross-attends to
	TextLayers    int
	TextHeads     int
	ContextLength int // 77

	// UNet.
	UNetChannels int // base width C; the low-resolution level has 2C
	UNetGroups   int // GroupNorm groups; must divide C
	UNetHeads    int

	// VAE decoder.
	VAEChannels int

	// Face projection: the paper's 4-layer MLP, E → H → H → H → 3·D.
	EmbeddingSpace string
	EmbeddingDim   int // E
	ProjHidden     int // H (768 in the paper)

	// SampleSize is the default image side in pixels (written to face0.json).
	SampleSize int

	// BPEPath is the CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz) to write
	// as the tokenizer; empty writes a small byte-level vocabulary instead,
	// which keeps the text encoder's embedding table tiny.
	BPEPath string

	// ExternalDataThreshold is passed to onnx.Save for every component (0:
	// the default, about 1.8 GB); tests set it low to exercise side files.
	ExternalDataThreshold int64
}

// TinyConfig is the tiny default: a few hundred thousand weights, fast
// enough on a CPU to sample 32x32 images (4x4 latents) in tests.
func TinyConfig() Config {
	return Config{
		Name:           "tiny",
		Seed:           1,
		TextWidth:      32,
		TextLayers:     2,
		TextHeads:      2,
		ContextLength:  77,
		UNetChannels:   32,
		UNetGroups:     8,
		UNetHeads:      2,
		VAEChannels:    16,
		EmbeddingSpace: DefaultSpace,
		EmbeddingDim:   DefaultEmbedDim,
		ProjHidden:     64,
		SampleSize:     32,
	}
}

func (c Config) withDefaults() Config {
	d := TinyConfig()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.TextWidth, d.TextWidth)
	set(&c.TextLayers, d.TextLayers)
	set(&c.TextHeads, d.TextHeads)
	set(&c.ContextLength, d.ContextLength)
	set(&c.UNetChannels, d.UNetChannels)
	set(&c.UNetGroups, d.UNetGroups)
	set(&c.UNetHeads, d.UNetHeads)
	set(&c.VAEChannels, d.VAEChannels)
	set(&c.EmbeddingDim, d.EmbeddingDim)
	set(&c.ProjHidden, d.ProjHidden)
	set(&c.SampleSize, d.SampleSize)
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.EmbeddingSpace == "" {
		c.EmbeddingSpace = d.EmbeddingSpace
	}
	return c
}
