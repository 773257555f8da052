package base

import (
	"slices"
	"testing"

	"github.com/face0/face0/ml/ckpt"
	"github.com/face0/face0/ml/ckpt/ckpttest"
	"github.com/face0/face0/training/model"
	"github.com/face0/face0/training/sd"
	"github.com/face0/face0/training/textenc"
	"github.com/face0/face0/training/vae"
)

// TestSD15KeysAreTheNetworks: the complete key list of a real SD 1.5
// checkpoint (ml/ckpt/testdata/sd15-keys.tsv, with EMA) maps, with EMA and
// without, onto exactly the tensors training/sd, training/vae and
// training/textenc define for SD 1.x: every spec by one key, with its
// shape (the VAE attention's 1×1 kernels squeezed), and no key left over.
func TestSD15KeysAreTheNetworks(t *testing.T) {
	src := ckpttest.SD15(t)
	arch := SD1()
	specs := map[ckpt.Part][]model.ParamSpec{ckpt.UNet: sd.Specs(arch.UNet), ckpt.VAE: vae.Specs(arch.VAE), ckpt.TextEncoder: textenc.Specs(arch.Text)}
	for _, ema := range []ckpt.EMA{ckpt.EMAAuto, ckpt.EMAOff} {
		m, err := ckpt.Map(src, ckpt.Options{EMA: ema})
		if err != nil {
			t.Fatal(err)
		}
		for p, sp := range specs {
			if len(m.Parts[p]) != len(sp) {
				t.Errorf("EMA %d: %s has %d tensors in the file, %d in the network", ema, p, len(m.Parts[p]), len(sp))
			}
			for _, s := range sp {
				e, ok := m.Parts[p][s.Name]
				if !ok {
					t.Errorf("%s %s: no key of the file gives it", p, s.Name)
					continue
				}
				shape := src.Shape(e.Key)
				if e.Reshape {
					shape = shape[:2]
				}
				if !slices.Equal(shape, s.Shape) {
					t.Errorf("%s %s: the file's %s is %v, the network's %v", p, s.Name, e.Key, shape, s.Shape)
				}
			}
		}
		if n := model.ParamCount(specs[ckpt.UNet]); n != 859520964 {
			t.Errorf("UNet weights %d", n)
		}
	}
}
