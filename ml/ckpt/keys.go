package ckpt

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Part is one network of a checkpoint.
type Part string

// The three networks of an SD 1.x checkpoint, by the name their weights
// take in diffusers' folders.
const (
	UNet        Part = "unet"
	VAE         Part = "vae"
	TextEncoder Part = "text_encoder"
)

// Parts lists the networks in the order an import writes them.
var Parts = []Part{UNet, VAE, TextEncoder}

// Key prefixes of the original (CompVis latent-diffusion) layout.
const (
	UNetPrefix = "model.diffusion_model."
	VAEPrefix  = "first_stage_model."
	// TextPrefix is the CLIP text model inside FrozenCLIPEmbedder, as
	// transformers ≥ 4.21 names it; older checkpoints (SD 1.4 era) lack
	// "text_model." (OldTextPrefix).
	TextPrefix    = "cond_stage_model.transformer.text_model."
	OldTextPrefix = "cond_stage_model.transformer."
	EMAPrefix     = "model_ema."
)

// textModel is the prefix textenc's names carry (transformers' CLIPTextModel).
const textModel = "text_model."

// The resnet sub-layers: latent-diffusion's ResBlock names against
// diffusers' ResnetBlock2D names.
var resnetNames = [][2]string{
	{"in_layers.0", "norm1"},
	{"in_layers.2", "conv1"},
	{"emb_layers.1", "time_emb_proj"},
	{"out_layers.0", "norm2"},
	{"out_layers.3", "conv2"},
	{"skip_connection", "conv_shortcut"},
}

// VAE sub-layer names that differ (encoder/decoder resnets, mid attention).
var vaeResnetNames = [][2]string{{"nin_shortcut", "conv_shortcut"}}

var vaeAttnNames = [][2]string{
	{"norm", "group_norm"},
	{"q", "to_q"},
	{"k", "to_k"},
	{"v", "to_v"},
	{"proj_out", "to_out.0"},
}

// swapPrefix rewrites the first dotted component(s) of rest by table
// (from → to, or to → from when back), returning ok=false when none fits.
func swapPrefix(rest string, table [][2]string, back bool) (string, bool) {
	for _, p := range table {
		from, to := p[0], p[1]
		if back {
			from, to = to, from
		}
		if r, ok := strings.CutPrefix(rest, from+"."); ok {
			return to + "." + r, true
		}
	}
	return "", false
}

// isParam reports whether s is a plain parameter leaf ("weight", "bias").
func isParam(s string) bool { return s == "weight" || s == "bias" }

// leaf checks that rest is "<one of names>.<weight|bias>"-shaped after a
// prefix swap: one sub-layer name (possibly dotted, like to_out.0) and a
// parameter.
func leafOK(rest string) bool {
	i := strings.LastIndex(rest, ".")
	return i > 0 && isParam(rest[i+1:])
}

// splitIndex cuts "N.rest" into N and rest.
func splitIndex(s string) (int, string, bool) {
	num, rest, ok := strings.Cut(s, ".")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return 0, "", false
	}
	return n, rest, true
}

// transformerLeaf accepts the sub-names of a Transformer2DModel with one
// BasicTransformerBlock (identical in both layouts).
func transformerLeaf(rest string) bool {
	for _, p := range []string{"norm.", "proj_in.", "proj_out.", "transformer_blocks.0."} {
		if strings.HasPrefix(rest, p) {
			return leafOK(rest)
		}
	}
	return false
}

// unetName maps a UNet key (without UNetPrefix) to diffusers' name; L is
// layers_per_block. ok is false for a key of no part of SD 1.x's UNet.
func unetName(key string, L int) (string, bool) {
	resnet := func(prefix, rest string) (string, bool) {
		r, ok := swapPrefix(rest, resnetNames, false)
		if !ok || !leafOK(r) {
			return "", false
		}
		return prefix + r, true
	}
	switch {
	case strings.HasPrefix(key, "time_embed.0."):
		return "time_embedding.linear_1." + key[len("time_embed.0."):], isParam(key[len("time_embed.0."):])
	case strings.HasPrefix(key, "time_embed.2."):
		return "time_embedding.linear_2." + key[len("time_embed.2."):], isParam(key[len("time_embed.2."):])
	case strings.HasPrefix(key, "out.0."):
		return "conv_norm_out." + key[len("out.0."):], isParam(key[len("out.0."):])
	case strings.HasPrefix(key, "out.2."):
		return "conv_out." + key[len("out.2."):], isParam(key[len("out.2."):])
	case strings.HasPrefix(key, "input_blocks."):
		n, rest, ok := splitIndex(key[len("input_blocks."):])
		if !ok {
			return "", false
		}
		m, rest, ok := splitIndex(rest)
		if !ok {
			return "", false
		}
		if n == 0 {
			return "conv_in." + rest, m == 0 && isParam(rest)
		}
		i, j := (n-1)/(L+1), (n-1)%(L+1)
		block := "down_blocks." + strconv.Itoa(i) + "."
		switch {
		case j == L && m == 0 && strings.HasPrefix(rest, "op."):
			return block + "downsamplers.0.conv." + rest[3:], isParam(rest[3:])
		case j < L && m == 0:
			return resnet(block+"resnets."+strconv.Itoa(j)+".", rest)
		case j < L && m == 1 && transformerLeaf(rest):
			return block + "attentions." + strconv.Itoa(j) + "." + rest, true
		}
	case strings.HasPrefix(key, "middle_block."):
		m, rest, ok := splitIndex(key[len("middle_block."):])
		if !ok {
			return "", false
		}
		switch {
		case m == 0:
			return resnet("mid_block.resnets.0.", rest)
		case m == 1 && transformerLeaf(rest):
			return "mid_block.attentions.0." + rest, true
		case m == 2:
			return resnet("mid_block.resnets.1.", rest)
		}
	case strings.HasPrefix(key, "output_blocks."):
		n, rest, ok := splitIndex(key[len("output_blocks."):])
		if !ok {
			return "", false
		}
		m, rest, ok := splitIndex(rest)
		if !ok {
			return "", false
		}
		i, j := n/(L+1), n%(L+1)
		block := "up_blocks." + strconv.Itoa(i) + "."
		switch {
		case m == 0:
			return resnet(block+"resnets."+strconv.Itoa(j)+".", rest)
		case (m == 1 || m == 2) && j == L && strings.HasPrefix(rest, "conv."):
			return block + "upsamplers.0.conv." + rest[5:], isParam(rest[5:])
		case m == 1 && transformerLeaf(rest):
			return block + "attentions." + strconv.Itoa(j) + "." + rest, true
		}
	}
	return "", false
}

// unetKeys is unetName's inverse over a whole set of diffusers names
// (the set decides whether an up block has attentions, which moves its
// upsampler from output_blocks.N.1 to .2).
func unetKeys(names []string, L int) (map[string]string, error) {
	upAttn := map[int]bool{}
	for _, n := range names {
		if r, ok := strings.CutPrefix(n, "up_blocks."); ok {
			if i, rest, ok := splitIndex(r); ok && strings.HasPrefix(rest, "attentions.") {
				upAttn[i] = true
			}
		}
	}
	out := make(map[string]string, len(names))
	resnet := func(prefix, rest string) (string, bool) {
		r, ok := swapPrefix(rest, resnetNames, true)
		return prefix + r, ok
	}
	for _, n := range names {
		var key string
		ok := true
		switch {
		case strings.HasPrefix(n, "time_embedding.linear_1."):
			key = "time_embed.0." + n[len("time_embedding.linear_1."):]
		case strings.HasPrefix(n, "time_embedding.linear_2."):
			key = "time_embed.2." + n[len("time_embedding.linear_2."):]
		case strings.HasPrefix(n, "conv_in."):
			key = "input_blocks.0.0." + n[len("conv_in."):]
		case strings.HasPrefix(n, "conv_norm_out."):
			key = "out.0." + n[len("conv_norm_out."):]
		case strings.HasPrefix(n, "conv_out."):
			key = "out.2." + n[len("conv_out."):]
		case strings.HasPrefix(n, "mid_block.resnets.0."):
			key, ok = resnet("middle_block.0.", n[len("mid_block.resnets.0."):])
		case strings.HasPrefix(n, "mid_block.resnets.1."):
			key, ok = resnet("middle_block.2.", n[len("mid_block.resnets.1."):])
		case strings.HasPrefix(n, "mid_block.attentions.0."):
			key = "middle_block.1." + n[len("mid_block.attentions.0."):]
		case strings.HasPrefix(n, "down_blocks."), strings.HasPrefix(n, "up_blocks."):
			down := strings.HasPrefix(n, "down_blocks.")
			i, rest, ok1 := splitIndex(n[strings.Index(n, ".")+1:])
			kind, rest2, ok2 := strings.Cut(rest, ".")
			if !ok1 || !ok2 {
				ok = false
				break
			}
			j, rest3, ok3 := splitIndex(rest2)
			if !ok3 {
				ok = false
				break
			}
			var blk int
			var sub string
			switch {
			case down && kind == "resnets":
				blk, sub = 1+i*(L+1)+j, "0."
			case down && kind == "attentions":
				blk, sub = 1+i*(L+1)+j, "1."
			case down && kind == "downsamplers" && j == 0 && strings.HasPrefix(rest3, "conv."):
				blk, sub, rest3 = (i+1)*(L+1), "0.op.", rest3[len("conv."):]
			case !down && kind == "resnets":
				blk, sub = i*(L+1)+j, "0."
			case !down && kind == "attentions":
				blk, sub = i*(L+1)+j, "1."
			case !down && kind == "upsamplers" && j == 0 && strings.HasPrefix(rest3, "conv."):
				blk, sub = i*(L+1)+L, "1."
				if upAttn[i] {
					sub = "2."
				}
			default:
				ok = false
			}
			if !ok {
				break
			}
			list := "input_blocks."
			if !down {
				list = "output_blocks."
			}
			key = list + strconv.Itoa(blk) + "." + sub
			if kind == "resnets" {
				r, ok4 := swapPrefix(rest3, resnetNames, true)
				if !ok4 {
					ok = false
					break
				}
				key += r
			} else {
				key += rest3
			}
		default:
			ok = false
		}
		if !ok {
			return nil, fmt.Errorf("ckpt: no original UNet key for %q", n)
		}
		out[n] = UNetPrefix + key
	}
	return out, nil
}

// vaeName maps a VAE key (without VAEPrefix) to diffusers' AutoencoderKL
// name; levels is the number of resolution levels (the decoder's up.i
// run in reverse order of diffusers' up_blocks). reshape is true for the
// mid attention's 1×1 convolutions, which diffusers stores as linears.
func vaeName(key string, levels int) (name string, reshape, ok bool) {
	if strings.HasPrefix(key, "quant_conv.") || strings.HasPrefix(key, "post_quant_conv.") {
		return key, false, leafOK(key)
	}
	half, rest, found := strings.Cut(key, ".")
	if !found || (half != "encoder" && half != "decoder") {
		return "", false, false
	}
	p := half + "."
	switch {
	case rest == "conv_in.weight" || rest == "conv_in.bias" || rest == "conv_out.weight" || rest == "conv_out.bias":
		return p + rest, false, true
	case strings.HasPrefix(rest, "norm_out."):
		return p + "conv_norm_out." + rest[len("norm_out."):], false, isParam(rest[len("norm_out."):])
	case strings.HasPrefix(rest, "mid.block_1."), strings.HasPrefix(rest, "mid.block_2."):
		r := rest[len("mid.block_1."):]
		idx := "0"
		if rest[len("mid.block_")] == '2' {
			idx = "1"
		}
		if s, ok := swapPrefix(r, vaeResnetNames, false); ok {
			r = s
		}
		return p + "mid_block.resnets." + idx + "." + r, false, vaeResnetLeaf(r)
	case strings.HasPrefix(rest, "mid.attn_1."):
		r, ok := swapPrefix(rest[len("mid.attn_1."):], vaeAttnNames, false)
		if !ok || !leafOK(r) {
			return "", false, false
		}
		return p + "mid_block.attentions.0." + r, !strings.HasPrefix(r, "group_norm.") && strings.HasSuffix(r, ".weight"), true
	}
	var lvl, sub string
	if half == "encoder" {
		lvl, sub = "down.", "down_blocks."
	} else {
		lvl, sub = "up.", "up_blocks."
	}
	r, found := strings.CutPrefix(rest, lvl)
	if !found {
		return "", false, false
	}
	i, r, okI := splitIndex(r)
	if !okI || i >= levels {
		return "", false, false
	}
	if half == "decoder" {
		i = levels - 1 - i
	}
	block := p + sub + strconv.Itoa(i) + "."
	switch {
	case strings.HasPrefix(r, "block."):
		j, rr, ok := splitIndex(r[len("block."):])
		if !ok {
			return "", false, false
		}
		if s, ok := swapPrefix(rr, vaeResnetNames, false); ok {
			rr = s
		}
		return block + "resnets." + strconv.Itoa(j) + "." + rr, false, vaeResnetLeaf(rr)
	case half == "encoder" && strings.HasPrefix(r, "downsample.conv."):
		return block + "downsamplers.0.conv." + r[len("downsample.conv."):], false, isParam(r[len("downsample.conv."):])
	case half == "decoder" && strings.HasPrefix(r, "upsample.conv."):
		return block + "upsamplers.0.conv." + r[len("upsample.conv."):], false, isParam(r[len("upsample.conv."):])
	}
	return "", false, false
}

func vaeResnetLeaf(r string) bool {
	for _, s := range []string{"norm1.", "conv1.", "norm2.", "conv2.", "conv_shortcut."} {
		if strings.HasPrefix(r, s) {
			return isParam(r[len(s):])
		}
	}
	return false
}

// vaeKeys is vaeName's inverse for a set of diffusers names.
func vaeKeys(names []string, levels int) (map[string]string, error) {
	inv := map[string]string{}
	for _, n := range names {
		var key string
		switch {
		case strings.HasPrefix(n, "quant_conv."), strings.HasPrefix(n, "post_quant_conv."):
			key = n
		default:
			key = vaeKey(n, levels)
		}
		if key == "" {
			return nil, fmt.Errorf("ckpt: no original VAE key for %q", n)
		}
		inv[n] = VAEPrefix + key
	}
	return inv, nil
}

func vaeKey(n string, levels int) string {
	half, rest, ok := strings.Cut(n, ".")
	if !ok || (half != "encoder" && half != "decoder") {
		return ""
	}
	p := half + "."
	switch {
	case strings.HasPrefix(rest, "conv_in."), strings.HasPrefix(rest, "conv_out."):
		return p + rest
	case strings.HasPrefix(rest, "conv_norm_out."):
		return p + "norm_out." + rest[len("conv_norm_out."):]
	case strings.HasPrefix(rest, "mid_block.resnets."):
		i, r, ok := splitIndex(rest[len("mid_block.resnets."):])
		if !ok || i > 1 {
			return ""
		}
		if s, ok := swapPrefix(r, vaeResnetNames, true); ok {
			r = s
		}
		return p + "mid.block_" + strconv.Itoa(i+1) + "." + r
	case strings.HasPrefix(rest, "mid_block.attentions.0."):
		r, ok := swapPrefix(rest[len("mid_block.attentions.0."):], vaeAttnNames, true)
		if !ok {
			return ""
		}
		return p + "mid.attn_1." + r
	}
	sub, lvl := "down_blocks.", "down."
	if half == "decoder" {
		sub, lvl = "up_blocks.", "up."
	}
	r, ok := strings.CutPrefix(rest, sub)
	if !ok {
		return ""
	}
	i, r, ok := splitIndex(r)
	if !ok {
		return ""
	}
	if half == "decoder" {
		i = levels - 1 - i
	}
	block := p + lvl + strconv.Itoa(i) + "."
	switch {
	case strings.HasPrefix(r, "resnets."):
		j, rr, ok := splitIndex(r[len("resnets."):])
		if !ok {
			return ""
		}
		if s, ok := swapPrefix(rr, vaeResnetNames, true); ok {
			rr = s
		}
		return block + "block." + strconv.Itoa(j) + "." + rr
	case half == "encoder" && strings.HasPrefix(r, "downsamplers.0.conv."):
		return block + "downsample.conv." + r[len("downsamplers.0.conv."):]
	case half == "decoder" && strings.HasPrefix(r, "upsamplers.0.conv."):
		return block + "upsample.conv." + r[len("upsamplers.0.conv."):]
	}
	return ""
}

// textName maps a text-encoder key (the part after "cond_stage_model.transformer.")
// to transformers' CLIPTextModel name (text_model.…): both spellings,
// with and without text_model., give the same name.
func textName(rest string) (string, bool) {
	r := strings.TrimPrefix(rest, textModel)
	for _, p := range []string{"embeddings.token_embedding.", "embeddings.position_embedding.", "encoder.layers.", "final_layer_norm."} {
		if strings.HasPrefix(r, p) && leafOK(r) {
			return textModel + r, true
		}
	}
	return "", false
}

// unetLayers infers layers_per_block from the UNet's keys: the first
// downsampler sits at input_blocks.(L+1).0.op. A single-level UNet has
// none; then the input blocks after conv_in are its L layers.
func unetLayers(keys []string) int {
	first, maxN := -1, 0
	for _, k := range keys {
		r, ok := strings.CutPrefix(k, "input_blocks.")
		if !ok {
			continue
		}
		n, rest, ok := splitIndex(r)
		if !ok {
			continue
		}
		maxN = max(maxN, n)
		if strings.HasPrefix(rest, "0.op.") && (first < 0 || n < first) {
			first = n
		}
	}
	if first > 0 {
		return first - 1
	}
	return max(maxN, 1)
}

// vaeLevels counts the encoder's down.i levels.
func vaeLevels(keys []string) int {
	n := 0
	for _, k := range keys {
		if r, ok := strings.CutPrefix(k, "encoder.down."); ok {
			if i, _, ok := splitIndex(r); ok {
				n = max(n, i+1)
			}
		}
	}
	return n
}

// emaKey is the key latent-diffusion's LitEma stores a UNet weight's
// average under: the parameter's name inside the DiffusionWrapper
// ("diffusion_model.…") with its dots removed, after "model_ema.".
func emaKey(unetKey string) string {
	return EMAPrefix + strings.ReplaceAll(strings.TrimPrefix(unetKey, "model."), ".", "")
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
