package base

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// tinyBase writes a random tiny base (WriteTiny) into a temporary folder.
func tinyBase(t *testing.T, edit func(*sd.Config, *vae.Config, *textenc.Config)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	if err := WriteTiny(dir, 5, edit); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpen(t *testing.T) {
	dir := tinyBase(t, nil)
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.UNet.CrossAttentionDim != 32 || m.VAE.LatentChannels != 4 || m.Text.HiddenSize != 32 || m.EndToken != m.Text.VocabSize-1 || m.HasScheduler {
		t.Fatalf("opened %+v", m)
	}
	if ids := m.Tokenizer.Encode("a photo"); len(ids) == 0 {
		t.Fatal("the tokenizer encodes nothing")
	}
	u, err := m.UNetWeights()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u[model.DenoiserPrefix+"conv_in.weight"]; !ok || len(u) != len(sd.Specs(m.UNet)) {
		t.Fatalf("UNet weights: %d tensors, conv_in present %v", len(u), ok)
	}
	if _, err := m.VAEWeights(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.TextWeights(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(*sd.Config, *vae.Config, *textenc.Config)
		mess func(dir string)
		want string
	}{
		{"missing vae weights", nil, func(d string) { os.Remove(filepath.Join(d, VAEWeights)) }, "missing [vae/diffusion_pytorch_model.safetensors]"},
		{"missing unet config", nil, func(d string) { os.Remove(filepath.Join(d, UNetConfig)) }, "unet/config.json is missing"},
		{"bad json", nil, func(d string) { os.WriteFile(filepath.Join(d, TextConfig), []byte("{"), 0o644) }, "text_encoder/config.json"},
		{"context width", func(u *sd.Config, _ *vae.Config, _ *textenc.Config) { u.CrossAttentionDim = 64 }, nil, "cross_attention_dim 64 is not the text encoder's hidden_size 32"},
		{"latent channels", func(u *sd.Config, _ *vae.Config, _ *textenc.Config) { u.InChannels = 8 }, nil, "takes 8 and gives 4 channels, the VAE's latent has 4"},
		{"vocabulary", func(_ *sd.Config, _ *vae.Config, te *textenc.Config) { te.VocabSize = 100 }, nil, "outside the text encoder's vocab_size 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tinyBase(t, tc.edit)
			if tc.mess != nil {
				tc.mess(dir)
			}
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
	// A weight file that does not match its config names the tensor.
	dir := tinyBase(t, nil)
	u := sd.Tiny()
	u.BlockOutChannels = []int{32, 32}
	if err := sd.NewWeights(u, 1).Save(filepath.Join(dir, UNetWeights), nil); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UNetWeights(); err == nil || !strings.Contains(err.Error(), "down_blocks") {
		t.Fatalf("mis-shaped UNet weights: error %v, want it to name a down_blocks tensor", err)
	}
}
