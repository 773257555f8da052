// Package ckpt reads Stable Diffusion 1.x single-file checkpoints: the
// .safetensors files ComfyUI keeps in models/checkpoints and A1111 in
// models/Stable-diffusion, in the original (CompVis latent-diffusion) key
// layout:
//
//	model.diffusion_model.*                  the UNet (input_blocks, middle_block, output_blocks)
//	first_stage_model.*                      the VAE (encoder.down.i.block.j, decoder.up.i..., mid.attn_1)
//	cond_stage_model.transformer[.text_model].*  the CLIP ViT-L/14 text encoder
//	model_ema.*                              optional: the UNet's EMA, LitEma's dot-less names
//	betas, alphas_cumprod, ...               optional: the DDPM schedule buffers
//
// Map renames every key to the name diffusers (UNet2DConditionModel,
// AutoencoderKL) and transformers (CLIPTextModel) give the same tensor, the
// names training/sd, training/vae and training/textenc use, so the three
// networks load as a diffusers folder would. Detect recognises what is not
// SD 1.x (SDXL, SD 2.x, SD3, FLUX, LoRAs, inpainting and InstructPix2Pix
// UNets, ControlNets, VAEs alone) and Open refuses it by name.
//
// Tensors are read one at a time (safetensors.Reader): a 4 GB fp32 or 7 GB
// EMA checkpoint never sits in memory. A checkpoint holds no tokenizer and
// no scheduler config; SD 1.x always uses CLIP's tokenizer
// (WriteTokenizer) and the scaled-linear DDPM schedule.
package ckpt

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/face0/face0/ml/safetensors"
)

// EMA chooses between a checkpoint's two copies of the UNet.
type EMA int

const (
	// EMAAuto takes the EMA weights when the file has them (diffusers'
	// converter calls them "usually better for inference"), else the
	// plain ones.
	EMAAuto EMA = iota
	// EMAOn requires the EMA weights.
	EMAOn
	// EMAOff takes the plain (non-EMA) weights, e.g. to continue training.
	EMAOff
)

// Options adjust Map and Open.
type Options struct {
	EMA EMA
}

// Entry is where one network tensor lives in the file.
type Entry struct {
	Key string // the checkpoint's key
	// Reshape drops the trailing 1×1 of the VAE attention's convolution
	// kernels ([C,C,1,1]), which diffusers holds as linear weights [C,C].
	Reshape bool
}

// Mapping is a checkpoint's keys sorted into the three networks.
type Mapping struct {
	// Parts maps each network's tensor names (diffusers'/transformers')
	// to their entries.
	Parts map[Part]map[string]Entry
	// Layers is the UNet's layers_per_block (2 for SD 1.x), VAELevels
	// the VAE's resolution levels (4), both read off the keys.
	Layers, VAELevels int
	HasEMA            bool // the file holds model_ema.* weights
	UsedEMA           bool // Parts[UNet] reads them
	// Ignored lists keys that are no network weight: the schedule
	// buffers, the text encoder's position_ids, model_ema.decay and
	// num_updates, and the UNet copy not chosen.
	Ignored []string
	// Unknown lists keys outside every known part (a bundled extra
	// network, say); the import names them and goes on.
	Unknown []string
}

// scheduleBuffers are the DDPM buffers latent-diffusion registers
// (ldm/models/diffusion/ddpm.py register_schedule) and saves in the file.
var scheduleBuffers = map[string]bool{
	"betas": true, "alphas_cumprod": true, "alphas_cumprod_prev": true,
	"sqrt_alphas_cumprod": true, "sqrt_one_minus_alphas_cumprod": true,
	"log_one_minus_alphas_cumprod": true, "sqrt_recip_alphas_cumprod": true,
	"sqrt_recipm1_alphas_cumprod": true, "posterior_variance": true,
	"posterior_log_variance_clipped": true, "posterior_mean_coef1": true,
	"posterior_mean_coef2": true,
	// LatentDiffusion registers scale_factor when it scales by the data's
	// standard deviation, and DDPM logvar when it learns it.
	"scale_factor": true, "logvar": true,
}

// Map sorts src's keys into the three networks under their diffusers
// names. It fails, naming every offending key, when a key under a network's
// prefix is no tensor of SD 1.x's network, when two keys give the same
// tensor, or when the EMA choice cannot be met.
func Map(src Source, o Options) (*Mapping, error) {
	keys := src.Names()
	var unetKeys, vaeKeys []string
	var emaKeys = map[string]bool{}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, UNetPrefix):
			unetKeys = append(unetKeys, k[len(UNetPrefix):])
		case strings.HasPrefix(k, VAEPrefix):
			vaeKeys = append(vaeKeys, k[len(VAEPrefix):])
		case strings.HasPrefix(k, EMAPrefix):
			emaKeys[k] = true
		}
	}
	m := &Mapping{
		Parts:     map[Part]map[string]Entry{UNet: {}, VAE: {}, TextEncoder: {}},
		Layers:    unetLayers(unetKeys),
		VAELevels: vaeLevels(vaeKeys),
	}
	// The EMA copy: LitEma's names of every UNet weight, when present.
	m.HasEMA = len(emaKeys) > 2 // decay and num_updates alone are no copy
	switch {
	case o.EMA == EMAOn && !m.HasEMA:
		return nil, errors.New("ckpt: the EMA weights were asked for, but the file holds no model_ema.* weights")
	case o.EMA != EMAOff && m.HasEMA:
		m.UsedEMA = true
	}
	var extra, dup, noEMA []string
	owner := map[Part]map[string]string{UNet: {}, VAE: {}, TextEncoder: {}}
	add := func(p Part, name, key string, reshape bool) {
		if prev, ok := owner[p][name]; ok {
			dup = append(dup, fmt.Sprintf("%s and %s (both %s)", prev, key, name))
			return
		}
		owner[p][name] = key
		m.Parts[p][name] = Entry{Key: key, Reshape: reshape}
	}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, UNetPrefix):
			name, ok := unetName(k[len(UNetPrefix):], m.Layers)
			if !ok {
				extra = append(extra, k)
				continue
			}
			if !m.UsedEMA {
				add(UNet, name, k, false)
				continue
			}
			ek := emaKey(k)
			if !emaKeys[ek] {
				noEMA = append(noEMA, k+" (no "+ek+")")
				continue
			}
			delete(emaKeys, ek)
			add(UNet, name, ek, false)
			m.Ignored = append(m.Ignored, k)
		case strings.HasPrefix(k, VAEPrefix):
			name, reshape, ok := vaeName(k[len(VAEPrefix):], m.VAELevels)
			if !ok {
				extra = append(extra, k)
				continue
			}
			add(VAE, name, k, reshape)
		case strings.HasPrefix(k, OldTextPrefix):
			rest := k[len(OldTextPrefix):]
			if rest == "text_model.embeddings.position_ids" || rest == "embeddings.position_ids" {
				m.Ignored = append(m.Ignored, k)
				continue
			}
			name, ok := textName(rest)
			if !ok {
				extra = append(extra, k)
				continue
			}
			add(TextEncoder, name, k, false)
		case strings.HasPrefix(k, EMAPrefix):
			// Sorted out below: used, ignored, or extra.
		case scheduleBuffers[k]:
			m.Ignored = append(m.Ignored, k)
		default:
			m.Unknown = append(m.Unknown, k)
		}
	}
	for _, k := range sorted(emaKeys) {
		switch {
		case k == EMAPrefix+"decay" || k == EMAPrefix+"num_updates" || !m.UsedEMA:
			m.Ignored = append(m.Ignored, k)
		default:
			extra = append(extra, k+" (an EMA weight of no UNet key)")
		}
	}
	var parts []string
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d keys are no tensor of SD 1.x's networks: %s", len(extra), strings.Join(extra, ", ")))
	}
	if len(dup) > 0 {
		parts = append(parts, fmt.Sprintf("%d tensors appear twice: %s", len(dup), strings.Join(dup, ", ")))
	}
	if len(noEMA) > 0 {
		parts = append(parts, fmt.Sprintf("the EMA copy lacks %d UNet weights (import with the plain weights instead): %s", len(noEMA), strings.Join(noEMA, ", ")))
	}
	if len(parts) > 0 {
		return nil, fmt.Errorf("ckpt: %s", strings.Join(parts, "; "))
	}
	sort.Strings(m.Ignored)
	sort.Strings(m.Unknown)
	return m, nil
}

// Keys gives, for each diffusers name of one network, the key an original
// single-file checkpoint stores it under (the inverse of Map, without EMA):
// layers is the UNet's layers_per_block, levels the VAE's resolution
// levels. Writers of test checkpoints use it.
func Keys(p Part, names []string, layers, levels int) (map[string]string, error) {
	switch p {
	case UNet:
		return unetKeys(names, layers)
	case VAE:
		return vaeKeys(names, levels)
	case TextEncoder:
		out := make(map[string]string, len(names))
		for _, n := range names {
			if _, ok := textName(n); !ok || !strings.HasPrefix(n, textModel) {
				return nil, fmt.Errorf("ckpt: no original text encoder key for %q", n)
			}
			out[n] = OldTextPrefix + n
		}
		return out, nil
	}
	return nil, fmt.Errorf("ckpt: unknown part %q", p)
}

// EMAKey is the key under which an original checkpoint stores the EMA of
// the UNet weight stored under key (model.diffusion_model.…).
func EMAKey(key string) string { return emaKey(key) }

// IsVAEAttentionConv reports whether a VAE tensor is one of the mid
// attention's projection weights, which the original layout stores as 1×1
// convolutions [C,C,1,1] and diffusers as linears [C,C].
func IsVAEAttentionConv(name string) bool {
	if !strings.Contains(name, ".mid_block.attentions.0.") || !strings.HasSuffix(name, ".weight") {
		return false
	}
	return !strings.Contains(name, ".group_norm.")
}

// Checkpoint is an opened SD 1.x single-file checkpoint.
type Checkpoint struct {
	Path string
	*Mapping
	r *safetensors.Reader
}

// Open reads path's header, refuses anything but an SD 1.x checkpoint
// (*KindError), and maps its keys. Close it.
func Open(path string, o Options) (*Checkpoint, error) {
	r, err := safetensors.OpenReader(path)
	if err != nil {
		if perr := notPickle(path); perr != nil {
			return nil, perr
		}
		return nil, fmt.Errorf("ckpt: %w", err)
	}
	if kind, why := Detect(r); kind != SD1 {
		r.Close()
		return nil, &KindError{Path: path, Kind: kind, Why: why}
	}
	m, err := Map(r, o)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Checkpoint{Path: path, Mapping: m, r: r}, nil
}

// notPickle explains a file the safetensors reader refused when it is
// PyTorch's .ckpt/.pt (a zip of pickles, or a bare pickle: protocol 2-5),
// saying what to do rather than calling it corrupt.
func notPickle(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ckpt: %w", err)
	}
	defer f.Close()
	var head [4]byte
	n, _ := f.Read(head[:])
	if n >= 2 && (string(head[:2]) == "PK" || (head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)) {
		return fmt.Errorf("ckpt: %s is a PyTorch pickle checkpoint (.ckpt/.pt), not .safetensors; face0 does not load pickles (loading one can run code): convert it to .safetensors first, or download the .safetensors release of the model", path)
	}
	return nil
}

// Close closes the file.
func (c *Checkpoint) Close() error { return c.r.Close() }

// Metadata is the file's __metadata__ (nil when absent).
func (c *Checkpoint) Metadata() map[string]string { return c.r.Metadata() }

// Names lists a network's tensor names, sorted.
func (c *Checkpoint) Names(p Part) []string {
	out := make([]string, 0, len(c.Parts[p]))
	for n := range c.Parts[p] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info is a network tensor's type and shape (after Reshape) from the
// header, without reading it.
func (c *Checkpoint) Info(p Part, name string) (safetensors.Info, bool) {
	e, ok := c.Parts[p][name]
	if !ok {
		return safetensors.Info{}, false
	}
	info, ok := c.r.Info(e.Key)
	if ok && e.Reshape {
		info.Shape = squeezeConv(info.Shape)
	}
	return info, ok
}

// Float32 reads one network tensor as float32 (from F32, F16 or BF16)
// with its shape.
func (c *Checkpoint) Float32(p Part, name string) ([]float32, []int, error) {
	e, ok := c.Parts[p][name]
	if !ok {
		return nil, nil, fmt.Errorf("ckpt: %s: no %s tensor %q", c.Path, p, name)
	}
	v, shape, err := c.r.Float32(e.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("ckpt: %w", err)
	}
	if e.Reshape {
		shape = squeezeConv(shape)
	}
	return v, shape, nil
}

// DTypes counts the element types of the tensors the networks read, e.g.
// {F16: 1131}.
func (c *Checkpoint) DTypes() map[safetensors.DType]int {
	out := map[safetensors.DType]int{}
	for _, p := range Parts {
		for _, e := range c.Parts[p] {
			if info, ok := c.r.Info(e.Key); ok {
				out[info.DType]++
			}
		}
	}
	return out
}

// squeezeConv turns a 1×1 kernel [O,I,1,1] into [O,I].
func squeezeConv(s []int) []int {
	if len(s) == 4 && s[2] == 1 && s[3] == 1 {
		return slices.Clone(s[:2])
	}
	return s
}
