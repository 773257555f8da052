// Package face0 is the built-in face0 pack: Stable Diffusion 1.x style
// generation conditioned on a face with the Face0 method (FACE0-PAPER.md,
// sections 2.2 and 3). EncodeText turns a prompt into CONDITIONING,
// Face0Sampler denoises with the paper's three-way guidance in one batched
// UNet call per step, Decode runs the VAE decoder, and RandomEmbedding and
// Interpolate make and mix face embeddings. Models are folders in the models
// directory (see ml/sdmodel for the layout); they load once per plugin
// process and stay warm in ml/ort's shared session cache.
package face0

import (
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"time"

	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/plugins/sdk"
)

// Pack returns the built-in face0 pack.
func Pack(version string) sdk.Pack {
	modelOpts := func() []sdk.Option {
		return []sdk.Option{sdk.Choices("model", modelChoices), sdk.WithFingerprint(modelFingerprint)}
	}
	return sdk.Pack{Name: "face0", Version: version, Nodes: []sdk.Node{
		schemaPatch{Node: sdk.Func("EncodeText", encodeText, append(modelOpts(), sdk.Category("face0"), sdk.DisplayName("Encode Text"),
			sdk.Describe("Tokenizes a prompt with the model's CLIP tokenizer (77 tokens) and runs its text encoder."))...),
			dynamic: modelHint},
		schemaPatch{Node: sdk.Func("Face0Sampler", face0Sample, append(modelOpts(), sdk.Category("face0"), sdk.DisplayName("Face0 Sampler"),
			sdk.Describe("Denoises from seeded noise with the Face0 guidance: eps = w*eps_cond + (1-w)*eps_uncond, eps_cond = c*eps(text,face) + (1-c)*(a*eps(face) + (1-a)*eps(text)). The projected face replaces the last three context tokens; all needed branches run in one batched UNet call per step and zero-weight branches are skipped."),
			sdk.TypeParam("face_embedding", "model", modelSpaces))...),
			extra:   map[string]map[string]any{"width": {"multipleOf": 8}, "height": {"multipleOf": 8}, "eta": etaRule},
			dynamic: modelHint},
		schemaPatch{Node: sdk.Func("Decode", decode, append(modelOpts(), sdk.Category("face0"), sdk.DisplayName("Decode"),
			sdk.Describe("Runs the model's VAE decoder on a latent (divided by the latent scale, 0.18215 for SD 1.x) and gives RGB images."))...),
			dynamic: modelHint},
		schemaPatch{Node: sdk.Func("RandomEmbedding", randomEmbedding, append(modelOpts(), sdk.Category("face0/embedding"), sdk.DisplayName("Random Embedding"),
			sdk.Describe("Draws a face embedding from the model's embedding distribution (the Gaussian mixture shipped with the model, else a random unit vector): the same seed gives the same character every time."),
			sdk.TypeParam("embedding", "model", modelSpaces))...),
			dynamic: modelHint},
		sdk.Func("Interpolate", interpolate, sdk.Category("face0/embedding"), sdk.DisplayName("Interpolate Embeddings"),
			sdk.Describe("Mixes face embeddings: linear or spherical interpolation from a to b by t, or the weighted mean of up to four (several photos of one person), optionally with added noise. All inputs must be from one embedding space.")),
	}}
}

// --- EncodeText ---

type encodeIn struct {
	Model  string `face0:"model" doc:"a model folder in the models directory"`
	Text   string `face0:"text,multiline,maxlen=100000,default=" doc:"the prompt; at most 74 tokens survive, the last three positions carry the face"`
	Device string `face0:"device,enum=cpu|cuda,default=cpu" doc:"where onnxruntime runs the model: cpu, or cuda (needs make setup-gpu, an NVIDIA GPU, CUDA 13 and cuDNN 9); face0 run --device sets it on every node"`
}

type encodeOut struct {
	Conditioning sdk.Tensor `face0:"CONDITIONING,type=CONDITIONING" doc:"the text encoder's last hidden state, [1, 77, width]"`
}

func encodeText(ctx *sdk.Context, in encodeIn) (encodeOut, error) {
	m, err := getModel(ctx.Dirs, in.Model)
	if err != nil {
		return encodeOut{}, err
	}
	if n := m.promptTooLong(in.Text); n > 0 {
		ctx.Warnf("the prompt is %d tokens too long: the last %d context positions carry the face, so its end is cut", n, m.Manifest.FaceTokens)
	}
	hidden, err := m.encode(ctx, in.Text, in.Device)
	if err != nil {
		return encodeOut{}, err
	}
	return encodeOut{Conditioning: sdk.Tensor{Data: hidden, Shape: []int64{1, int64(m.Manifest.ContextLength), int64(m.Manifest.TextWidth)}}}, nil
}

// --- Face0Sampler ---

type samplerIn struct {
	Model     string         `face0:"model" doc:"a model folder in the models directory"`
	Positive  sdk.Tensor     `face0:"positive,type=CONDITIONING" doc:"the prompt, from EncodeText with the same model"`
	Negative  *sdk.Tensor    `face0:"negative,type=CONDITIONING" doc:"optional negative prompt for the unconditioned branch; default: the empty prompt"`
	Face      *sdk.Embedding `face0:"face_embedding" doc:"the face; unconnected or null: the face tokens are zeroed"`
	Seed      int64          `face0:"seed,min=0,max=9007199254740991,default=0,randomize" doc:"sample i of the batch uses seed+i, so a sample never depends on its neighbours"`
	Steps     int            `face0:"steps,min=1,max=998,default=50" doc:"denoising steps; 998 at most, what every scheduler takes under SD 1.x's schedule (DPM++ 2M's leading spacing stops there)"`
	Width     int            `face0:"width,min=0,max=4096,step=8,default=0" doc:"pixels, a multiple of 8; 0: the model's native size"`
	Height    int            `face0:"height,min=0,max=4096,step=8,default=0" doc:"pixels, a multiple of 8; 0: the model's native size"`
	BatchSize int            `face0:"batch_size,min=1,max=64,default=1"`
	Scheduler string         `face0:"scheduler,enum=ddim|euler|dpm++2m,default=ddim" doc:"ddim as in the paper; euler; dpm++2m (DPM-Solver++ 2M)"`
	W         float64        `face0:"w,min=-100,max=100,step=0.1,default=7.5" doc:"classifier-free guidance weight (paper: 7.5)"`
	C         float64        `face0:"c,min=-10,max=10,step=0.05,default=1" doc:"weight of the text+face prediction; 1 is plain CFG (photo-real), 0.4-0.7 with a=0 for artistic styles, 1.4 with a=1 for very non-photo-real"`
	A         float64        `face0:"a,min=-10,max=10,step=0.05,default=0" doc:"share of face-only in the remaining 1-c (the rest is text-only)"`
	Eta       float64        `face0:"eta,min=0,max=1,step=0.05,default=0" doc:"ddim only: 0 is the deterministic DDIM of the paper; 1 draws fresh noise at each step like DDPM (seeded per sample), which hides a small model's errors better"`
	Noise     float64        `face0:"embedding_noise,min=0,max=10,step=0.01,default=0" doc:"Gaussian noise added to the face embedding, relative to its length (about 0.05-0.2 adds variety); sample i draws with seed+i"`
	Device    string         `face0:"device,enum=cpu|cuda,default=cpu" doc:"where onnxruntime runs the model: cpu, or cuda (needs make setup-gpu, an NVIDIA GPU, CUDA 13 and cuDNN 9); face0 run --device sets it on every node"`
}

type samplerOut struct {
	Latent sdk.Tensor `face0:"LATENT,type=LATENT" doc:"[batch, 4, height/8, width/8], scaled by the model's latent scale"`
}

// schedulerKinds maps the node's choices to ml/sched's samplers.
var schedulerKinds = map[string]sched.Kind{"ddim": sched.DDIM, "euler": sched.Euler, "dpm++2m": sched.DPMPP2M}

func face0Sample(ctx *sdk.Context, in samplerIn) (samplerOut, error) {
	start := time.Now()
	m, err := getModel(ctx.Dirs, in.Model)
	if err != nil {
		return samplerOut{}, err
	}
	j, release, err := m.newJob(ctx, in)
	if err != nil {
		return samplerOut{}, err
	}
	defer release()
	rep := newReporter(ctx, j.sched.Len())
	j.onStep = func(i int, _ []float32) { rep.step(i) }
	j.preview = previewEvery(j.sched.Len(), 250*time.Millisecond)
	j.onImage = rep.image
	x, stats, err := j.run(ctx)
	rep.close()
	if err != nil {
		if ctx.Err() != nil {
			return samplerOut{}, ctx.Err()
		}
		return samplerOut{}, err
	}
	// Tests and curious users read this line: which guidance branches ran
	// and how large each UNet batch was, without timing anything.
	ctx.Logf("face0 sampler: %d UNet calls, batch %d, branches %v, %v in the UNet of %v, device %s, pid %d, go heap free %d KiB",
		stats.Calls, stats.Batch, stats.Branches, stats.UNet.Round(time.Microsecond), time.Since(start).Round(time.Microsecond), deviceName(in.Device), os.Getpid(), goHeapFree()>>10)
	return samplerOut{Latent: sdk.Tensor{Data: x, Shape: []int64{int64(j.batch), int64(j.channels), int64(j.h), int64(j.w)}}}, nil
}

// --- Decode ---

type decodeIn struct {
	Model  string     `face0:"model" doc:"the model the latent was sampled with"`
	Latent sdk.Tensor `face0:"latent,type=LATENT"`
	Device string     `face0:"device,enum=cpu|cuda,default=cpu" doc:"where onnxruntime runs the VAE decoder: cpu, or cuda (needs make setup-gpu, an NVIDIA GPU, CUDA 13 and cuDNN 9); face0 run --device sets it on every node"`
}

type decodeOut struct {
	Image sdk.Image `face0:"IMAGE"`
}

func decode(ctx *sdk.Context, in decodeIn) (decodeOut, error) {
	m, err := getModel(ctx.Dirs, in.Model)
	if err != nil {
		return decodeOut{}, err
	}
	imgs, err := m.decode(ctx, in.Latent, in.Device)
	if err != nil {
		return decodeOut{}, err
	}
	out, err := sdk.ImageOf(imgs...)
	return decodeOut{Image: out}, err
}

// --- RandomEmbedding ---

type randomIn struct {
	Model string `face0:"model" doc:"the model whose embedding space and distribution to sample"`
	Seed  int64  `face0:"seed,min=0,max=9007199254740991,default=0,randomize" doc:"the same seed gives the same face (a consistent character)"`
}

type randomOut struct {
	Embedding sdk.Embedding `face0:"embedding" doc:"FACE_EMBEDDING in the model's space"`
}

func randomEmbedding(ctx *sdk.Context, in randomIn) (randomOut, error) {
	m, err := getModel(ctx.Dirs, in.Model)
	if err != nil {
		return randomOut{}, err
	}
	if err := m.needFace("RandomEmbedding"); err != nil {
		return randomOut{}, err
	}
	mix, err := m.mixture()
	if err != nil {
		return randomOut{}, err
	}
	v, err := f0.RandomEmbedding(mix, m.Manifest.Embedding.Dim, uint64(in.Seed))
	if err != nil {
		return randomOut{}, fmt.Errorf("model %s: %w", m.name, err)
	}
	return randomOut{Embedding: sdk.Embedding{Space: m.Manifest.Embedding.Space, Vector: v}}, nil
}

// --- Interpolate ---

type interpIn struct {
	A       sdk.Embedding  `face0:"a" doc:"first embedding (t = 0)"`
	B       *sdk.Embedding `face0:"b" doc:"second embedding (t = 1); for mean, the second of up to four"`
	C       *sdk.Embedding `face0:"c" doc:"mean only: third embedding"`
	D       *sdk.Embedding `face0:"d" doc:"mean only: fourth embedding"`
	Mode    string         `face0:"mode,enum=linear|spherical|mean,default=linear" doc:"linear: (1-t)a + t b; spherical: along the great circle, keeping the length; mean: weighted mean of the connected inputs"`
	T       float64        `face0:"t,min=-1,max=2,step=0.01,default=0.5,widget=slider" doc:"linear and spherical: 0 gives a, 1 gives b"`
	WA      float64        `face0:"weight_a,min=-100,max=100,step=0.1,default=1" doc:"mean only"`
	WB      float64        `face0:"weight_b,min=-100,max=100,step=0.1,default=1" doc:"mean only"`
	WC      float64        `face0:"weight_c,min=-100,max=100,step=0.1,default=1" doc:"mean only"`
	WD      float64        `face0:"weight_d,min=-100,max=100,step=0.1,default=1" doc:"mean only"`
	Noise   float64        `face0:"noise,min=0,max=10,step=0.01,default=0" doc:"Gaussian noise added after mixing, relative to the result's length"`
	NoiseSd int64          `face0:"noise_seed,min=0,max=9007199254740991,default=0,randomize"`
}

type interpOut struct {
	Embedding sdk.Embedding `face0:"embedding" doc:"in the inputs' space"`
}

func interpolate(ctx *sdk.Context, in interpIn) (interpOut, error) {
	type input struct {
		name string
		e    *sdk.Embedding
		w    float64
	}
	ins := []input{{"a", &in.A, in.WA}, {"b", in.B, in.WB}, {"c", in.C, in.WC}, {"d", in.D, in.WD}}
	var used []input
	for _, x := range ins {
		if x.e != nil {
			used = append(used, x)
		}
	}
	for _, x := range used[1:] {
		if x.e.Space != used[0].e.Space {
			return interpOut{}, fmt.Errorf("input %q is in embedding space %q but %q is in %q: embeddings from different face models cannot be mixed (embed all faces with the same model)", x.name, spaceName(x.e.Space), used[0].name, spaceName(used[0].e.Space))
		}
		if len(x.e.Vector) != len(used[0].e.Vector) {
			return interpOut{}, fmt.Errorf("input %q has %d values but %q has %d", x.name, len(x.e.Vector), used[0].name, len(used[0].e.Vector))
		}
	}
	var v []float32
	var err error
	switch in.Mode {
	case "mean":
		embs := make([][]float32, len(used))
		ws := make([]float64, len(used))
		for i, x := range used {
			embs[i], ws[i] = x.e.Vector, x.w
		}
		v, err = f0.Mean(embs, ws, false)
	default:
		if in.B == nil {
			return interpOut{}, fmt.Errorf("mode %s needs input \"b\" connected", in.Mode)
		}
		if in.C != nil || in.D != nil {
			ctx.Warnf("inputs c and d are only used by mode mean; ignored")
		}
		if in.Mode == "spherical" {
			v, err = f0.Slerp(in.A.Vector, in.B.Vector, in.T)
		} else {
			v, err = f0.Lerp(in.A.Vector, in.B.Vector, in.T)
		}
	}
	if err != nil {
		return interpOut{}, err
	}
	if in.Noise > 0 {
		v = f0.AddNoise(v, relStd(v, in.Noise), uint64(in.NoiseSd))
	}
	return interpOut{Embedding: sdk.Embedding{Space: in.A.Space, Vector: v}}, nil
}

// relStd turns noise relative to an embedding's length into the per-component
// standard deviation f0.AddNoise takes: noise of that std in every one of the
// n components has expected length r·|e|.
func relStd(e []float32, r float64) float64 {
	if len(e) == 0 {
		return 0
	}
	return r * f0.Norm(e) / math.Sqrt(float64(len(e)))
}

func spaceName(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// provider is the onnxruntime execution provider a node's device input
// selects ("" and "cpu": CPU; "cuda"). $FACE0_ORT_PROVIDER, the pack's
// older process-wide switch, still moves the CPU default elsewhere.
func provider(device string) ort.Options {
	if device == "" || device == "cpu" {
		if env := os.Getenv("FACE0_ORT_PROVIDER"); env != "" {
			return ort.Options{Provider: env}
		}
	}
	return ort.Options{Provider: device}
}

// deviceName is the device a run used, for its log line.
func deviceName(device string) string {
	if p := provider(device).Provider; p != "" {
		return p
	}
	return "cpu"
}

// goHeapFree is the memory the Go heap holds free for reuse without having
// returned it to the OS: part of the process's RSS that is not in use.
// The memory test subtracts it, so that the Go heap's sawtooth is not read
// as growth.
func goHeapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
