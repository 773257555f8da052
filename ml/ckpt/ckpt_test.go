package ckpt

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/ml/ckpt/ckpttest"
	"github.com/face0/face0/ml/safetensors"
)

// TestSD15MapsEveryKeyOnce: every key of the real checkpoint's list is
// used by exactly one network tensor or knowingly ignored, none is left
// over, and no two keys give the same tensor; with EMA and without.
func TestSD15MapsEveryKeyOnce(t *testing.T) {
	full := ckpttest.SD15(t)
	if len(full.Names()) != 1831 {
		t.Fatalf("fixture has %d keys, want 1831", len(full.Names()))
	}
	noEMA := full.Filter(func(n string) bool { return !strings.HasPrefix(n, EMAPrefix) })
	cases := []struct {
		name    string
		src     *ckpttest.KeyList
		ema     EMA
		usedEMA bool
		ignored int
	}{
		// 686 plain UNet keys, decay, num_updates, position_ids, 12 schedule buffers.
		{"EMA file, EMA weights", full, EMAAuto, true, 686 + 2 + 1 + 12},
		// 688 model_ema.* keys, position_ids, 12 schedule buffers.
		{"EMA file, plain weights", full, EMAOff, false, 688 + 1 + 12},
		{"file without EMA", noEMA, EMAAuto, false, 1 + 12},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Map(tc.src, Options{EMA: tc.ema})
			if err != nil {
				t.Fatal(err)
			}
			if m.Layers != 2 || m.VAELevels != 4 || m.UsedEMA != tc.usedEMA {
				t.Errorf("layers %d, levels %d, EMA used %v", m.Layers, m.VAELevels, m.UsedEMA)
			}
			if n := [3]int{len(m.Parts[UNet]), len(m.Parts[VAE]), len(m.Parts[TextEncoder])}; n != [3]int{686, 248, 196} {
				t.Errorf("tensors per network %v, want [686 248 196]", n)
			}
			if len(m.Unknown) != 0 || len(m.Ignored) != tc.ignored {
				t.Errorf("%d ignored (want %d), unknown %v", len(m.Ignored), tc.ignored, m.Unknown)
			}
			// Exactly once: the keys used plus those ignored are the file's keys.
			seen := map[string]int{}
			for _, p := range Parts {
				for _, e := range m.Parts[p] {
					seen[e.Key]++
				}
			}
			for _, k := range m.Ignored {
				seen[k]++
			}
			for _, k := range tc.src.Names() {
				if seen[k] != 1 {
					t.Errorf("key %s is accounted for %d times", k, seen[k])
				}
			}
			if len(seen) != len(tc.src.Names()) {
				t.Errorf("%d keys accounted for, the file has %d", len(seen), len(tc.src.Names()))
			}
			// The inverse gives back the plain keys.
			for _, p := range Parts {
				names := make([]string, 0, len(m.Parts[p]))
				for n := range m.Parts[p] {
					names = append(names, n)
				}
				inv, err := Keys(p, names, m.Layers, m.VAELevels)
				if err != nil {
					t.Fatal(err)
				}
				for n, e := range m.Parts[p] {
					want := e.Key
					if m.UsedEMA && p == UNet {
						want = inv[n]
						if EMAKey(want) != e.Key {
							t.Errorf("%s: EMA key %s, the inverse's %s has EMA key %s", n, e.Key, want, EMAKey(want))
						}
					}
					if p == TextEncoder {
						want = strings.Replace(want, "transformer.text_model.", "transformer.text_model.", 1)
					}
					if inv[n] != want {
						t.Errorf("%s %s: read from %s, the inverse says %s", p, n, want, inv[n])
					}
				}
			}
		})
	}
}

// TestSD15Names pins the renames that are easy to get wrong.
func TestSD15Names(t *testing.T) {
	m, err := Map(ckpttest.SD15(t), Options{EMA: EMAOff})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Part]map[string]string{
		UNet: {
			"conv_in.weight":                                                  "model.diffusion_model.input_blocks.0.0.weight",
			"time_embedding.linear_2.bias":                                    "model.diffusion_model.time_embed.2.bias",
			"down_blocks.0.resnets.1.time_emb_proj.weight":                    "model.diffusion_model.input_blocks.2.0.emb_layers.1.weight",
			"down_blocks.1.resnets.0.conv_shortcut.weight":                    "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
			"down_blocks.1.attentions.1.proj_in.weight":                       "model.diffusion_model.input_blocks.5.1.proj_in.weight",
			"down_blocks.2.downsamplers.0.conv.weight":                        "model.diffusion_model.input_blocks.9.0.op.weight",
			"down_blocks.3.resnets.1.norm2.weight":                            "model.diffusion_model.input_blocks.11.0.out_layers.0.weight",
			"mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias":       "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.2.bias",
			"mid_block.resnets.1.conv2.weight":                                "model.diffusion_model.middle_block.2.out_layers.3.weight",
			"up_blocks.0.resnets.2.conv1.weight":                              "model.diffusion_model.output_blocks.2.0.in_layers.2.weight",
			"up_blocks.0.upsamplers.0.conv.weight":                            "model.diffusion_model.output_blocks.2.1.conv.weight",
			"up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight": "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight",
			"up_blocks.1.upsamplers.0.conv.bias":                              "model.diffusion_model.output_blocks.5.2.conv.bias",
			"up_blocks.3.attentions.2.proj_out.bias":                          "model.diffusion_model.output_blocks.11.1.proj_out.bias",
			"conv_norm_out.weight":                                            "model.diffusion_model.out.0.weight",
			"conv_out.bias":                                                   "model.diffusion_model.out.2.bias",
		},
		VAE: {
			"encoder.down_blocks.0.resnets.1.conv2.weight":       "first_stage_model.encoder.down.0.block.1.conv2.weight",
			"encoder.down_blocks.1.resnets.0.conv_shortcut.bias": "first_stage_model.encoder.down.1.block.0.nin_shortcut.bias",
			"encoder.down_blocks.2.downsamplers.0.conv.weight":   "first_stage_model.encoder.down.2.downsample.conv.weight",
			"encoder.mid_block.attentions.0.group_norm.weight":   "first_stage_model.encoder.mid.attn_1.norm.weight",
			"decoder.mid_block.attentions.0.to_out.0.weight":     "first_stage_model.decoder.mid.attn_1.proj_out.weight",
			"decoder.mid_block.resnets.1.norm1.bias":             "first_stage_model.decoder.mid.block_2.norm1.bias",
			"decoder.up_blocks.0.resnets.2.conv1.weight":         "first_stage_model.decoder.up.3.block.2.conv1.weight",
			"decoder.up_blocks.0.upsamplers.0.conv.weight":       "first_stage_model.decoder.up.3.upsample.conv.weight",
			"decoder.up_blocks.3.resnets.0.conv_shortcut.weight": "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
			"decoder.conv_norm_out.bias":                         "first_stage_model.decoder.norm_out.bias",
			"post_quant_conv.weight":                             "first_stage_model.post_quant_conv.weight",
		},
		TextEncoder: {
			"text_model.embeddings.token_embedding.weight":         "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
			"text_model.encoder.layers.11.self_attn.out_proj.bias": "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.out_proj.bias",
			"text_model.final_layer_norm.weight":                   "cond_stage_model.transformer.text_model.final_layer_norm.weight",
		},
	}
	for p, names := range want {
		for name, key := range names {
			if got := m.Parts[p][name].Key; got != key {
				t.Errorf("%s %s: key %q, want %q", p, name, got, key)
			}
		}
	}
	if e := m.Parts[VAE]["decoder.mid_block.attentions.0.to_q.weight"]; !e.Reshape {
		t.Error("the VAE attention's q kernel is a 1x1 conv to reshape")
	}
	if e := m.Parts[VAE]["decoder.mid_block.attentions.0.to_q.bias"]; e.Reshape {
		t.Error("a bias needs no reshape")
	}
	if !IsVAEAttentionConv("encoder.mid_block.attentions.0.to_k.weight") || IsVAEAttentionConv("encoder.mid_block.attentions.0.group_norm.weight") {
		t.Error("IsVAEAttentionConv")
	}
}

// TestOldTextNames: SD 1.4-era files name the text encoder without
// "text_model."; both spellings give the same tensors, and a file holding
// both is refused with the pair named.
func TestOldTextNames(t *testing.T) {
	full := ckpttest.SD15(t)
	old := &ckpttest.KeyList{}
	for _, n := range full.Names() {
		old.With(strings.Replace(n, "cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.", 1), full.Shape(n)...)
	}
	a, err := Map(full, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Map(old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for n := range a.Parts[TextEncoder] {
		if _, ok := b.Parts[TextEncoder][n]; !ok {
			t.Errorf("old names lack %s", n)
		}
	}
	both := full.Filter(nil)
	both.With("cond_stage_model.transformer.final_layer_norm.weight", 768)
	if _, err := Map(both, Options{}); err == nil || !strings.Contains(err.Error(), "appear twice") || !strings.Contains(err.Error(), "cond_stage_model.transformer.final_layer_norm.weight") {
		t.Errorf("both spellings: %v", err)
	}
}

// TestMapErrors: keys that are no tensor of SD 1.x, and EMA choices that
// cannot be met, are named.
func TestMapErrors(t *testing.T) {
	full := ckpttest.SD15(t)
	extra := full.Filter(nil)
	extra.With("model.diffusion_model.input_blocks.1.2.weight", 320)
	extra.With("first_stage_model.encoder.mid.attn_2.q.weight", 512, 512, 1, 1)
	extra.With("some_other_network.weight", 3)
	_, err := Map(extra, Options{})
	if err == nil || !strings.Contains(err.Error(), "model.diffusion_model.input_blocks.1.2.weight") || !strings.Contains(err.Error(), "attn_2") {
		t.Errorf("extra keys: %v", err)
	}
	m, err := Map(full.Filter(nil).With("some_other_network.weight", 3), Options{})
	if err != nil || !slices.Equal(m.Unknown, []string{"some_other_network.weight"}) {
		t.Errorf("an unknown top-level key is listed, not fatal: %v %v", err, m)
	}
	noEMA := full.Filter(func(n string) bool { return !strings.HasPrefix(n, EMAPrefix) })
	if _, err := Map(noEMA, Options{EMA: EMAOn}); err == nil || !strings.Contains(err.Error(), "no model_ema") {
		t.Errorf("EMA asked of a file without: %v", err)
	}
	partial := full.Filter(func(n string) bool { return n != "model_ema.diffusion_modelout0weight" })
	if _, err := Map(partial, Options{}); err == nil || !strings.Contains(err.Error(), "model.diffusion_model.out.0.weight") {
		t.Errorf("EMA copy missing a weight: %v", err)
	}
}

// TestDetect recognises what is not SD 1.x by its keys and shapes.
func TestDetect(t *testing.T) {
	full := ckpttest.SD15(t)
	swap := func(name string, shape ...int) *ckpttest.KeyList {
		return full.Filter(nil).With(name, shape...) // With replaces a present key's shape
	}
	cases := []struct {
		name string
		src  *ckpttest.KeyList
		want Kind
	}{
		{"sd15", full, SD1},
		{"inpainting", swap("model.diffusion_model.input_blocks.0.0.weight", 320, 9, 3, 3), SD1Inpaint},
		{"pix2pix", swap("model.diffusion_model.input_blocks.0.0.weight", 320, 8, 3, 3), SD1Pix2Pix},
		{"sd2 by context", swap("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 320, 1024), SD2},
		{"sd2 by open clip", (&ckpttest.KeyList{}).With("model.diffusion_model.input_blocks.0.0.weight", 320, 4, 3, 3).With("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 3072, 1024), SD2},
		{"sdxl", (&ckpttest.KeyList{}).With("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", 768).With("model.diffusion_model.label_emb.0.0.weight", 1280, 2816), SDXL},
		{"sdxl refiner", (&ckpttest.KeyList{}).With("model.diffusion_model.input_blocks.0.0.weight", 384, 4, 3, 3).With("model.diffusion_model.label_emb.0.0.weight", 1536, 2560), SDXL},
		{"kohya lora", (&ckpttest.KeyList{}).With("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", 4, 320).With("lora_unet_down_blocks_0_attentions_0_proj_in.alpha"), LoRA},
		{"peft lora", (&ckpttest.KeyList{}).With("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", 4, 320), LoRA},
		{"sd3", (&ckpttest.KeyList{}).With("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", 4608, 1536), SD3},
		{"flux", (&ckpttest.KeyList{}).With("double_blocks.0.img_attn.qkv.weight", 9216, 3072), Flux},
		{"controlnet", (&ckpttest.KeyList{}).With("control_model.input_blocks.0.0.weight", 320, 4, 3, 3), ControlNet},
		{"vae", (&ckpttest.KeyList{}).With("encoder.down.0.block.0.conv1.weight", 128, 128, 3, 3).With("decoder.up.0.block.0.conv1.weight", 128, 128, 3, 3), VAEOnly},
		{"diffusers unet", (&ckpttest.KeyList{}).With("down_blocks.0.resnets.0.conv1.weight", 320, 320, 3, 3), DiffusersUNet},
		{"nothing", &ckpttest.KeyList{}, Unknown},
		{"other", (&ckpttest.KeyList{}).With("fc.weight", 3, 3), Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Detect(tc.src)
			if got != tc.want || why == "" {
				t.Errorf("Detect = %q (%s), want %q", got, why, tc.want)
			}
		})
	}
}

// TestOpenRefuses: a real file of another kind is refused naming the kind
// and what told, and a pickle is refused with what to do.
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	lora := filepath.Join(dir, "lora.safetensors")
	if err := safetensors.Write(lora, map[string]safetensors.Tensor{
		"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": safetensors.FromFloat32([]int{1, 2}, []float32{1, 2}),
	}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(lora, Options{})
	var ke *KindError
	if !asKind(err, &ke) || ke.Kind != LoRA || !strings.Contains(err.Error(), "LoRA") || !strings.Contains(err.Error(), "lora_down") {
		t.Errorf("LoRA: %v", err)
	}
	pickle := filepath.Join(dir, "model.ckpt")
	if err := os.WriteFile(pickle, []byte("PK\x03\x04archive/data.pkl"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(pickle, Options{}); err == nil || !strings.Contains(err.Error(), "pickle") || !strings.Contains(err.Error(), "convert it to .safetensors") {
		t.Errorf("pickle: %v", err)
	}
}

func asKind(err error, target **KindError) bool {
	ke, ok := err.(*KindError)
	if ok {
		*target = ke
	}
	return ok
}
