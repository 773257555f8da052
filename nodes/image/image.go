// Package image is the built-in image pack: loading, saving, previewing and
// resizing images.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	stddraw "image/draw"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "image/gif"
	_ "image/jpeg"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp"

	"github.com/face0/face0/engine/workflow"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

// Pack returns the built-in image pack.
func Pack(version string) sdk.Pack {
	return sdk.Pack{Name: "image", Version: version, Nodes: []sdk.Node{
		uploadHint{sdk.Func("LoadImage", loadImage, sdk.Category("image"),
			sdk.Describe("Loads a PNG, JPEG, GIF or WebP image from the input folder, turned upright by its EXIF orientation; transparent images are put on white (or keep their alpha), and MASK gives the alpha."),
			sdk.WithFingerprint(fingerprintImage), sdk.Choices("image", inputChoices))},
		// Both write files: a cached result counts only while its files are
		// still there unchanged (in this run's folders); otherwise they are
		// written again. An identical file already there is reused.
		sdk.Func("SaveImage", saveImage, sdk.Category("image"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles),
			sdk.Describe("Saves images as PNG in the output folder; each file carries the workflow that made it. Every run leaves them there: a cached run whose files were deleted or moved to another output folder writes them again, and an identical file already there is kept instead of a duplicate.")),
		sdk.Func("PreviewImage", previewImage, sdk.Category("image"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles),
			sdk.Describe("Shows images without keeping them (written to the temp folder).")),
		sdk.Func("ImageScale", scaleImage, sdk.Category("image/transform"),
			sdk.Describe("Resizes images to a width and height.")),
	}}
}

// MaxPixels is the default cap on an image's width times height, checked
// from the header before decoding so that a decompression bomb (a tiny file
// claiming 100000x100000 pixels) is refused instead of allocating 40 GB.
// FACE0_MAX_PIXELS overrides it per process.
var MaxPixels int64 = 40_000_000

// EnvMaxPixels names the environment variable that overrides MaxPixels: a
// whole number of pixels (40000000 is 40 megapixels). The host's environment
// reaches the plugin process, so setting it where face0 runs is enough.
const EnvMaxPixels = "FACE0_MAX_PIXELS"

// maxPixels is the cap in force: FACE0_MAX_PIXELS when set, else MaxPixels.
func maxPixels() (int64, error) {
	s := os.Getenv(EnvMaxPixels)
	if s == "" {
		return MaxPixels, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q is not a positive whole number of pixels (e.g. 40000000 for 40 megapixels)", EnvMaxPixels, s)
	}
	return n, nil
}

type loadIn struct {
	Image string `face0:"image,maxlen=1024" doc:"file name inside the input folder"`
	Alpha string `face0:"alpha,enum=white|keep,default=white" doc:"transparent images: white composites them onto white (RGB out); keep passes the alpha channel on (RGBA out). Either way MASK carries the alpha."`
}

type loadOut struct {
	Image sdk.Image `face0:"IMAGE"`
	Mask  sdk.Raw   `face0:"MASK,type=MASK" doc:"the alpha channel, uint8 [1,H,W]: 255 opaque, 0 transparent (all 255 for images without alpha)"`
}

// resolveInput confines a user-supplied name to the input folder.
func resolveInput(dirs *pb.Dirs, name string) (string, error) {
	if name == "" {
		return "", errors.New("no image file given")
	}
	if dirs == nil || dirs.Input == "" {
		return "", errors.New("the host gave no input folder")
	}
	if filepath.IsAbs(name) || strings.Contains(filepath.ToSlash(name), "../") || name == ".." || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("image %q: give a file name inside the input folder, not a path outside it", name)
	}
	root, err := filepath.EvalSymlinks(dirs.Input)
	if err != nil {
		return "", fmt.Errorf("input folder %s: %w", dirs.Input, err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(name)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("image %q not found in the input folder %s", name, dirs.Input)
		}
		return "", err
	}
	if rel, err := filepath.Rel(root, p); err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("image %q points outside the input folder", name)
	}
	return p, nil
}

// fingerprintImage hashes the file's content, so that replacing a file under
// the same name re-runs LoadImage and everything after it.
func fingerprintImage(_ context.Context, dirs *pb.Dirs, in map[string]*pb.Value) ([]byte, error) {
	name, err := value.AsString(in["image"])
	if err != nil {
		return nil, fmt.Errorf("input \"image\": %w", err)
	}
	path, err := resolveInput(dirs, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func loadImage(ctx *sdk.Context, in loadIn) (loadOut, error) {
	noteInput(ctx.Dirs)
	path, err := resolveInput(ctx.Dirs, in.Image)
	if err != nil {
		return loadOut{}, err
	}
	img, err := decodeFile(path, in.Image)
	if err != nil {
		return loadOut{}, err
	}
	mask := alphaMask(img)
	if in.Alpha != "keep" {
		onWhite(img)
	}
	out, err := sdk.ImageOf(img)
	return loadOut{Image: out, Mask: mask}, err
}

// decodeFile reads and decodes an image file, refusing what is over the
// pixel cap before decoding, and returns it upright (EXIF orientation
// applied) as NRGBA with bounds at the origin.
func decodeFile(path, name string) (*image.NRGBA, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", name, err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("image %q is an empty file", name)
	}
	limit, err := maxPixels()
	if err != nil {
		return nil, err
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %q is not a PNG, JPEG, GIF or WebP image (%v)", name, err)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > limit || cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("image %q is %dx%d pixels, over the limit of %s pixels; refusing to decode it (raise %s to allow larger images)", name, cfg.Width, cfg.Height, humanPixels(limit), EnvMaxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %q: corrupt or truncated %s data: %v", name, format, err)
	}
	n, ok := img.(*image.NRGBA)
	if !ok || n.Rect.Min != (image.Point{}) {
		b := img.Bounds()
		n = image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		stddraw.Draw(n, n.Rect, img, b.Min, stddraw.Src)
	}
	return orient(n, exifOrientation(data)), nil
}

// humanPixels writes a pixel count as megapixels when it is a whole number
// of them ("40 million"), else as is.
func humanPixels(n int64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%d million", n/1_000_000)
	}
	return strconv.FormatInt(n, 10)
}

// alphaMask is img's alpha channel as a MASK value, uint8 [1,H,W].
func alphaMask(img *image.NRGBA) *pb.Value {
	b := img.Bounds()
	data := make([]byte, b.Dx()*b.Dy())
	for y := 0; y < b.Dy(); y++ {
		row := img.Pix[img.PixOffset(b.Min.X, b.Min.Y+y):]
		for x := 0; x < b.Dx(); x++ {
			data[y*b.Dx()+x] = row[4*x+3]
		}
	}
	return &pb.Value{Type: "MASK", Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{
		Dtype: pb.Tensor_UINT8, Shape: []int64{1, int64(b.Dy()), int64(b.Dx())}, Data: data,
	}}}
}

// onWhite composites img onto white in place (straight alpha: c*a + 255*(1-a),
// rounded) and makes it opaque, so that transparent areas do not turn black
// when the alpha is dropped downstream.
func onWhite(img *image.NRGBA) {
	for i := 0; i+3 < len(img.Pix); i += 4 {
		a := uint32(img.Pix[i+3])
		if a == 255 {
			continue
		}
		for c := 0; c < 3; c++ {
			img.Pix[i+c] = uint8((uint32(img.Pix[i+c])*a + 255*(255-a) + 127) / 255)
		}
		img.Pix[i+3] = 255
	}
}

type saveIn struct {
	Images sdk.Image `face0:"images"`
	Prefix string    `face0:"filename_prefix,default=face0,maxlen=200"`
}

type saveOut struct {
	UI sdk.Raw `face0:"images,type=UI,ui"`
}

func saveImage(ctx *sdk.Context, in saveIn) (saveOut, error) {
	return writeImages(ctx, in.Images, in.Prefix, "output")
}

type previewIn struct {
	Images sdk.Image `face0:"images"`
}

func previewImage(ctx *sdk.Context, in previewIn) (saveOut, error) {
	return writeImages(ctx, in.Images, "preview", "temp")
}

// writeImages saves each image as a PNG carrying the workflow. The bytes
// depend only on the pixels and the workflow, so that running the node
// again finds its earlier file (sdk.Context.SaveFile) instead of adding a
// copy.
func writeImages(ctx *sdk.Context, imgs sdk.Image, prefix, kind string) (saveOut, error) {
	text := map[string]string{}
	if len(ctx.Workflow) > 0 {
		text[workflow.PNGKeyWorkflow] = string(ctx.Workflow)
	}
	files := make([]sdk.File, 0, len(imgs.Batch))
	for _, img := range imgs.Batch {
		var buf bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
			return saveOut{}, err
		}
		data := buf.Bytes()
		if len(text) > 0 {
			var err error
			if data, err = workflow.EmbedPNG(data, text); err != nil {
				return saveOut{}, err
			}
		}
		f, err := ctx.SaveFile(kind, prefix, ".png", data)
		if err != nil {
			return saveOut{}, err
		}
		files = append(files, f)
	}
	return saveOut{UI: sdk.FilesUI(files...)}, nil
}

type scaleIn struct {
	Images sdk.Image `face0:"images"`
	Width  int       `face0:"width,min=1,max=8192,default=512"`
	Height int       `face0:"height,min=1,max=8192,default=512"`
	Method string    `face0:"method,enum=bilinear|nearest|catmull-rom,default=bilinear"`
}

type scaleOut struct {
	Image sdk.Image `face0:"IMAGE"`
}

func scaleImage(ctx *sdk.Context, in scaleIn) (scaleOut, error) {
	var k draw.Interpolator = draw.BiLinear
	switch in.Method {
	case "nearest":
		k = draw.NearestNeighbor
	case "catmull-rom":
		k = draw.CatmullRom
	}
	out := make([]image.Image, len(in.Images.Batch))
	for i, src := range in.Images.Batch {
		dst := image.NewNRGBA(image.Rect(0, 0, in.Width, in.Height))
		k.Scale(dst, dst.Rect, src, src.Bounds(), draw.Src, nil)
		out[i] = dst
		ctx.Progress(int64(i+1), int64(len(in.Images.Batch)))
	}
	img, err := sdk.ImageOf(out...)
	return scaleOut{Image: img}, err
}
