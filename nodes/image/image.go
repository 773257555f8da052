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
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

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
		sdk.Func("LoadImage", loadImage, sdk.Category("image"),
			sdk.Describe("Loads a PNG, JPEG, GIF or WebP image from the input folder."),
			sdk.WithFingerprint(fingerprintImage)),
		sdk.Func("SaveImage", saveImage, sdk.Category("image"), sdk.OutputNode(),
			sdk.Describe("Saves images as PNG in the output folder; each file carries the workflow that made it.")),
		sdk.Func("PreviewImage", previewImage, sdk.Category("image"), sdk.OutputNode(),
			sdk.Describe("Shows images without keeping them (written to the temp folder).")),
		sdk.Func("ImageScale", scaleImage, sdk.Category("image/transform"),
			sdk.Describe("Resizes images to a width and height.")),
	}}
}

// MaxPixels refuses decompression bombs before decoding: checked from the header.
var MaxPixels int64 = 40_000_000

type loadIn struct {
	Image string `face0:"image,maxlen=1024" doc:"file name inside the input folder"`
}

type loadOut struct {
	Image sdk.Image `face0:"IMAGE"`
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
	path, err := resolveInput(ctx.Dirs, in.Image)
	if err != nil {
		return loadOut{}, err
	}
	img, err := decodeFile(path, in.Image)
	if err != nil {
		return loadOut{}, err
	}
	out, err := sdk.ImageOf(img)
	return loadOut{Image: out}, err
}

func decodeFile(path, name string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", name, err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("image %q is an empty file", name)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %q is not a PNG, JPEG, GIF or WebP image (%v)", name, err)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > MaxPixels || cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("image %q is %dx%d pixels, over the limit of %d megapixels; refusing to decode it", name, cfg.Width, cfg.Height, MaxPixels/1_000_000)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %q: corrupt or truncated %s data: %v", name, format, err)
	}
	return img, nil
}

type saveIn struct {
	Images sdk.Image `face0:"images"`
	Prefix string    `face0:"filename_prefix,default=face0,maxlen=200"`
}

type saveOut struct {
	UI sdk.Raw `face0:"images,type=UI,ui"`
}

var counter atomic.Int64

func saveImage(ctx *sdk.Context, in saveIn) (saveOut, error) {
	return writeImages(ctx, in.Images, in.Prefix, ctx.Dirs.GetOutput(), "output")
}

type previewIn struct {
	Images sdk.Image `face0:"images"`
}

func previewImage(ctx *sdk.Context, in previewIn) (saveOut, error) {
	return writeImages(ctx, in.Images, "preview", ctx.Dirs.GetTemp(), "temp")
}

func writeImages(ctx *sdk.Context, imgs sdk.Image, prefix, dir, kind string) (saveOut, error) {
	if dir == "" {
		return saveOut{}, fmt.Errorf("the host gave no %s folder", kind)
	}
	prefix = filepath.Clean(filepath.FromSlash(prefix))
	if filepath.IsAbs(prefix) || strings.HasPrefix(prefix, "..") {
		return saveOut{}, fmt.Errorf("filename_prefix %q must stay inside the %s folder", prefix, kind)
	}
	sub := filepath.Dir(prefix)
	base := filepath.Base(prefix)
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		return saveOut{}, err
	}
	text := map[string]string{}
	if len(ctx.Workflow) > 0 {
		text[workflow.PNGKeyWorkflow] = string(ctx.Workflow)
	}
	var items []*pb.Value
	stamp := time.Now().Format("20060102-150405")
	for i, img := range imgs.Batch {
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
		name, err := writeNew(filepath.Join(dir, sub), func() string {
			return fmt.Sprintf("%s_%s_%05d_%d.png", base, stamp, counter.Add(1), i)
		}, data)
		if err != nil {
			return saveOut{}, err
		}
		subSlash := filepath.ToSlash(sub)
		if subSlash == "." {
			subSlash = ""
		}
		items = append(items, mustRecord(map[string]any{"filename": name, "subfolder": subSlash, "type": kind}))
	}
	return saveOut{UI: &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: items}}}}, nil
}

func mustRecord(m map[string]any) *pb.Value {
	v, err := value.FromJSON(m)
	if err != nil {
		panic(err)
	}
	return v
}

// writeNew writes data under a fresh name from next, never replacing a file:
// the data goes to a temp file first and is then hard-linked into place, which
// fails if the name exists (two runs, or two processes, in the same second).
func writeNew(dir string, next func() string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	for i := 0; i < 1000; i++ {
		name := next()
		err := os.Link(tmp.Name(), filepath.Join(dir, name))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("could not find a free file name in %s", dir)
}

type scaleIn struct {
	Images sdk.Image `face0:"images"`
	Width  int       `face0:"width,min=1,max=8192,default=512"`
	Height int       `face0:"height,min=1,max=8192,default=512"`
	Method string    `face0:"method,enum=bilinear|nearest|catmull-rom,default=bilinear"`
}

func scaleImage(ctx *sdk.Context, in scaleIn) (loadOut, error) {
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
	return loadOut{Image: img}, err
}
