package face0

import (
	"fmt"
	"image"
	"math"
)

// sd15LatentRGB are the well-known linear factors that map SD 1.x's four VAE
// latent channels to approximate RGB in [-1, 1] (row: latent channel, column:
// R, G, B), as ComfyUI and A1111 use for their cheap previews. A preview costs
// 12 multiply-adds per latent pixel instead of a VAE decode.
var sd15LatentRGB = [4][3]float32{
	{0.3512, 0.2297, 0.3227},
	{0.3250, 0.4974, 0.2350},
	{-0.2829, 0.1762, 0.2721},
	{-0.2120, -0.2616, -0.7177},
}

// latentPreview turns sample b of a [B, C, h, w] latent into a small RGB image,
// one pixel per latent pixel, scaled up by an integer factor so that a tiny
// latent is still visible in the editor. A latent with other than four
// channels (a space-to-depth image) shows its first three as RGB, divided by
// latentScale to undo the scaling applied for training.
func latentPreview(lat []float32, b, c, h, w, scale int, latentScale float32) *image.NRGBA {
	if latentScale <= 0 {
		latentScale = 1
	}
	if scale < 1 {
		scale = 1
	}
	img := image.NewNRGBA(image.Rect(0, 0, w*scale, h*scale))
	plane := h * w
	base := b * c * plane
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var rgb [3]float32
			if c == 4 {
				for ch := 0; ch < 4; ch++ {
					v := lat[base+ch*plane+y*w+x]
					for k := 0; k < 3; k++ {
						rgb[k] += v * sd15LatentRGB[ch][k]
					}
				}
			} else {
				for k := 0; k < 3 && k < c; k++ {
					rgb[k] = lat[base+k*plane+y*w+x] / latentScale
				}
			}
			px := [4]uint8{toByte(rgb[0]), toByte(rgb[1]), toByte(rgb[2]), 255}
			for dy := 0; dy < scale; dy++ {
				row := img.Pix[(y*scale+dy)*img.Stride:]
				for dx := 0; dx < scale; dx++ {
					copy(row[(x*scale+dx)*4:], px[:])
				}
			}
		}
	}
	return img
}

// toByte maps [-1, 1] to [0, 255], rounding and clamping.
func toByte(v float32) uint8 {
	f := (float64(v) + 1) * 127.5
	if f != f || f <= 0 { // NaN shows as black rather than garbage
		return 0
	}
	if f >= 255 {
		return 255
	}
	return uint8(math.Round(f))
}

// decodedImages turns a VAE decoder's [B, 3, H, W] output in [-1, 1] into
// opaque RGB images.
func decodedImages(data []float32, shape []int64) ([]image.Image, error) {
	if len(shape) != 4 || shape[1] != 3 {
		return nil, fmt.Errorf("the VAE decoder gave shape %v; want [batch, 3, height, width]", shape)
	}
	n, h, w := int(shape[0]), int(shape[2]), int(shape[3])
	if len(data) != n*3*h*w {
		return nil, fmt.Errorf("the VAE decoder gave %d values for shape %v", len(data), shape)
	}
	plane := h * w
	out := make([]image.Image, n)
	for b := 0; b < n; b++ {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		src := data[b*3*plane:]
		for i := 0; i < plane; i++ {
			img.Pix[i*4+0] = toByte(src[i])
			img.Pix[i*4+1] = toByte(src[plane+i])
			img.Pix[i*4+2] = toByte(src[2*plane+i])
			img.Pix[i*4+3] = 255
		}
		out[b] = img
	}
	return out, nil
}
