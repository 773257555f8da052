// Command imagefx is an example third-party face0 plugin: a few image filters
// and a JPEG saver in their own binary. Build it into face0's plugins folder and face0 offers its
// nodes next to the built-in ones:
//
//	go build -o ~/.local/share/face0/plugins/imagefx ./examples/plugins/imagefx
package main

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"

	"github.com/face0/face0/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Pack{Name: "imagefx", Version: "1.0.0", Nodes: []sdk.Node{
		sdk.Func("Invert", invert, sdk.Category("image/filters"), sdk.Describe("Inverts colours; strength blends with the original.")),
		sdk.Func("Grayscale", grayscale, sdk.Category("image/filters"), sdk.Describe("Rec. 601 luma.")),
		sdk.Func("BoxBlur", boxBlur, sdk.Category("image/filters"), sdk.Describe("Blurs with a box filter, radius pixels, repeated passes times.")),
		// A node whose job is a file: SideEffects makes face0 reuse a cached
		// run only while the files it lists are still there unchanged, in
		// this run's output folder; otherwise it runs again.
		sdk.Func("SaveJPEG", saveJPEG, sdk.Category("image"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles),
			sdk.Describe("Saves images as JPEG files in the output folder.")),
	}})
}

type saveJPEGIn struct {
	Images  sdk.Image `face0:"images"`
	Prefix  string    `face0:"filename_prefix,default=imagefx/photo,maxlen=200" doc:"file name start, optionally under subfolders of the output folder"`
	Quality int       `face0:"quality,min=1,max=100,default=90"`
}

type saveJPEGOut struct {
	Images sdk.Raw `face0:"images,type=UI,ui"` // the saved files, shown by the editor
}

func saveJPEG(ctx *sdk.Context, in saveJPEGIn) (saveJPEGOut, error) {
	var files []sdk.File
	for _, img := range in.Images.Batch {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: in.Quality}); err != nil {
			return saveJPEGOut{}, err
		}
		// SaveFile never overwrites, checks the prefix stays inside the
		// output folder, and reuses an identical file from an earlier run.
		f, err := ctx.SaveFile("output", in.Prefix, ".jpg", buf.Bytes())
		if err != nil {
			return saveJPEGOut{}, err
		}
		files = append(files, f)
	}
	return saveJPEGOut{Images: sdk.FilesUI(files...)}, nil
}

type imageOut struct {
	Image sdk.Image `face0:"IMAGE"`
}

type invertIn struct {
	Image    sdk.Image `face0:"image"`
	Strength float64   `face0:"strength,min=0,max=1,default=1,step=0.05,widget=slider" doc:"0 leaves the image, 1 inverts fully"`
}

func invert(ctx *sdk.Context, in invertIn) (imageOut, error) {
	return mapPixels(ctx, in.Image, func(c color.NRGBA) color.NRGBA {
		mix := func(v uint8) uint8 { return uint8(float64(v)*(1-in.Strength) + float64(255-v)*in.Strength + 0.5) }
		return color.NRGBA{mix(c.R), mix(c.G), mix(c.B), c.A}
	})
}

type grayIn struct {
	Image sdk.Image `face0:"image"`
}

func grayscale(ctx *sdk.Context, in grayIn) (imageOut, error) {
	return mapPixels(ctx, in.Image, func(c color.NRGBA) color.NRGBA {
		y := uint8((299*int(c.R) + 587*int(c.G) + 114*int(c.B) + 500) / 1000)
		return color.NRGBA{y, y, y, c.A}
	})
}

func mapPixels(ctx *sdk.Context, img sdk.Image, f func(color.NRGBA) color.NRGBA) (imageOut, error) {
	out := make([]image.Image, len(img.Batch))
	for i, src := range img.Batch {
		dst := image.NewNRGBA(src.Rect)
		for p := 0; p < len(src.Pix); p += 4 {
			c := f(color.NRGBA{src.Pix[p], src.Pix[p+1], src.Pix[p+2], src.Pix[p+3]})
			dst.Pix[p], dst.Pix[p+1], dst.Pix[p+2], dst.Pix[p+3] = c.R, c.G, c.B, c.A
		}
		out[i] = dst
	}
	res, err := sdk.ImageOf(out...)
	return imageOut{res}, err
}

type blurIn struct {
	Image  sdk.Image `face0:"image"`
	Radius int       `face0:"radius,min=0,max=64,default=2"`
	Passes int       `face0:"passes,min=1,max=16,default=2" doc:"three passes approximate a Gaussian"`
}

func boxBlur(ctx *sdk.Context, in blurIn) (imageOut, error) {
	out := make([]image.Image, len(in.Image.Batch))
	total := int64(len(in.Image.Batch) * in.Passes)
	step := int64(0)
	for i, src := range in.Image.Batch {
		cur := src
		for p := 0; p < in.Passes; p++ {
			if ctx.Err() != nil {
				return imageOut{}, errors.New("cancelled")
			}
			cur = blurPass(blurPass(cur, in.Radius, true), in.Radius, false)
			step++
			ctx.Progress(step, total)
		}
		out[i] = cur
	}
	res, err := sdk.ImageOf(out...)
	return imageOut{res}, err
}

// blurPass is a separable running-sum box filter along one axis, clamping at edges.
func blurPass(src *image.NRGBA, r int, horizontal bool) *image.NRGBA {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	n, m := w, h
	if !horizontal {
		n, m = h, w
	}
	at := func(line, i int) int {
		i = min(max(i, 0), n-1)
		if horizontal {
			return line*src.Stride + 4*i
		}
		return i*src.Stride + 4*line
	}
	for line := 0; line < m; line++ {
		var sum [4]int
		for i := -r; i <= r; i++ {
			o := at(line, i)
			for c := 0; c < 4; c++ {
				sum[c] += int(src.Pix[o+c])
			}
		}
		for i := 0; i < n; i++ {
			o := at(line, i)
			d := o // same layout: dst and src share stride
			for c := 0; c < 4; c++ {
				dst.Pix[d+c] = uint8((sum[c] + r) / (2*r + 1))
			}
			add, sub := at(line, i+r+1), at(line, i-r)
			for c := 0; c < 4; c++ {
				sum[c] += int(src.Pix[add+c]) - int(src.Pix[sub+c])
			}
		}
	}
	return dst
}
