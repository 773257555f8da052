package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

// tiffBlock is a minimal TIFF header + IFD0 holding only the orientation tag.
func tiffBlock(bo binary.ByteOrder, orientation uint16) []byte {
	var b bytes.Buffer
	if bo == binary.LittleEndian {
		b.WriteString("II")
	} else {
		b.WriteString("MM")
	}
	binary.Write(&b, bo, uint16(42))
	binary.Write(&b, bo, uint32(8))
	binary.Write(&b, bo, uint16(1)) // one entry
	binary.Write(&b, bo, uint16(exifOrientationTag))
	binary.Write(&b, bo, uint16(3)) // SHORT
	binary.Write(&b, bo, uint32(1))
	binary.Write(&b, bo, orientation)
	binary.Write(&b, bo, uint16(0))
	binary.Write(&b, bo, uint32(0)) // no next IFD
	return b.Bytes()
}

// withPNGExif inserts an eXIf chunk after IHDR.
func withPNGExif(pngData, tiff []byte) []byte {
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	var chunk bytes.Buffer
	binary.Write(&chunk, binary.BigEndian, uint32(len(tiff)))
	chunk.WriteString("eXIf")
	chunk.Write(tiff)
	binary.Write(&chunk, binary.BigEndian, crc32.ChecksumIEEE(append([]byte("eXIf"), tiff...)))
	out := append([]byte{}, pngData[:ihdrEnd]...)
	out = append(out, chunk.Bytes()...)
	return append(out, pngData[ihdrEnd:]...)
}

// withJPEGExif inserts an APP1 Exif segment after SOI.
func withJPEGExif(jpegData, tiff []byte) []byte {
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := []byte{0xFF, 0xD8, 0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}
	out = append(out, seg...)
	return append(out, jpegData[2:]...)
}

func TestTIFFOrientation(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"little endian", tiffBlock(binary.LittleEndian, 6), 6},
		{"big endian", tiffBlock(binary.BigEndian, 8), 8},
		{"empty", nil, 0},
		{"truncated", tiffBlock(binary.LittleEndian, 6)[:12], 0},
		{"bad magic", append([]byte("XX"), tiffBlock(binary.LittleEndian, 6)[2:]...), 0},
		{"ifd offset past end", func() []byte { b := tiffBlock(binary.LittleEndian, 6); b[4] = 200; return b }(), 0},
	}
	for _, tt := range tests {
		if got := tiffOrientation(tt.data); got != tt.want {
			t.Errorf("%s: orientation %d, want %d", tt.name, got, tt.want)
		}
	}
	// A WebP container with an EXIF chunk, found by the RIFF walker.
	var webp bytes.Buffer
	webp.WriteString("RIFF\x00\x00\x00\x00WEBPVP8X")
	binary.Write(&webp, binary.LittleEndian, uint32(10))
	webp.Write(make([]byte, 10))
	tiff := tiffBlock(binary.BigEndian, 3)
	webp.WriteString("EXIF")
	binary.Write(&webp, binary.LittleEndian, uint32(len(tiff)))
	webp.Write(tiff)
	if got := exifOrientation(webp.Bytes()); got != 3 {
		t.Errorf("webp: orientation %d, want 3", got)
	}
	if got := exifOrientation([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF}); got != 1 {
		t.Errorf("jpeg with a segment longer than the file: orientation %d, want 1", got)
	}
}

// grid3x2 has a distinct colour per pixel: red channel = x, green = y.
func grid3x2() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(y), 0, 255})
		}
	}
	return m
}

func TestEXIFOrientationApplied(t *testing.T) {
	var buf bytes.Buffer
	png.Encode(&buf, grid3x2())
	// want[o] is the upright image's pixels, row by row, as (x, y) of the
	// stored image: what a viewer honouring the tag shows.
	want := map[int][][][2]uint8{
		1: {{{0, 0}, {1, 0}, {2, 0}}, {{0, 1}, {1, 1}, {2, 1}}},
		2: {{{2, 0}, {1, 0}, {0, 0}}, {{2, 1}, {1, 1}, {0, 1}}},
		3: {{{2, 1}, {1, 1}, {0, 1}}, {{2, 0}, {1, 0}, {0, 0}}},
		4: {{{0, 1}, {1, 1}, {2, 1}}, {{0, 0}, {1, 0}, {2, 0}}},
		5: {{{0, 0}, {0, 1}}, {{1, 0}, {1, 1}}, {{2, 0}, {2, 1}}},
		6: {{{0, 1}, {0, 0}}, {{1, 1}, {1, 0}}, {{2, 1}, {2, 0}}},
		7: {{{2, 1}, {2, 0}}, {{1, 1}, {1, 0}}, {{0, 1}, {0, 0}}},
		8: {{{2, 0}, {2, 1}}, {{1, 0}, {1, 1}}, {{0, 0}, {0, 1}}},
	}
	dir := t.TempDir()
	for o := 1; o <= 8; o++ {
		p := filepath.Join(dir, "o.png")
		os.WriteFile(p, withPNGExif(buf.Bytes(), tiffBlock(binary.LittleEndian, uint16(o))), 0o644)
		img, err := decodeFile(p, "o.png")
		if err != nil {
			t.Fatalf("orientation %d: %v", o, err)
		}
		w := want[o]
		if b := img.Bounds(); b.Dy() != len(w) || b.Dx() != len(w[0]) {
			t.Fatalf("orientation %d: size %v, want %dx%d", o, b, len(w[0]), len(w))
		}
		for y, row := range w {
			for x, src := range row {
				if c := img.NRGBAAt(x, y); c.R != src[0] || c.G != src[1] {
					t.Errorf("orientation %d: pixel (%d,%d) is stored (%d,%d), want (%d,%d)", o, x, y, c.R, c.G, src[0], src[1])
				}
			}
		}
	}
	// A JPEG from a phone held upright: stored landscape, tagged 6.
	wide := image.NewNRGBA(image.Rect(0, 0, 64, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 64; x++ {
			c := color.NRGBA{0, 0, 255, 255} // right half blue
			if x < 32 {
				c = color.NRGBA{255, 0, 0, 255} // left half red
			}
			wide.SetNRGBA(x, y, c)
		}
	}
	var jb bytes.Buffer
	jpeg.Encode(&jb, wide, &jpeg.Options{Quality: 95})
	p := filepath.Join(dir, "phone.jpg")
	os.WriteFile(p, withJPEGExif(jb.Bytes(), tiffBlock(binary.BigEndian, 6)), 0o644)
	img, err := decodeFile(p, "phone.jpg")
	if err != nil {
		t.Fatal(err)
	}
	// Turned clockwise: the stored left (red) half is now on top.
	if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 64 {
		t.Fatalf("phone.jpg: size %v, want 32x64", b)
	}
	if top, bottom := img.NRGBAAt(16, 8), img.NRGBAAt(16, 56); top.R < 200 || bottom.B < 200 {
		t.Errorf("phone.jpg: top %v, bottom %v; want red on top, blue below", top, bottom)
	}
}

func TestLoadImageAlpha(t *testing.T) {
	dir := t.TempDir()
	m := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	m.SetNRGBA(0, 0, color.NRGBA{0, 0, 0, 0})     // fully transparent
	m.SetNRGBA(1, 0, color.NRGBA{255, 0, 0, 128}) // half-transparent red
	var buf bytes.Buffer
	png.Encode(&buf, m)
	os.WriteFile(filepath.Join(dir, "a.png"), buf.Bytes(), 0o644)
	var opaque bytes.Buffer
	png.Encode(&opaque, grid3x2())
	os.WriteFile(filepath.Join(dir, "opaque.png"), opaque.Bytes(), 0o644)

	ctx := sdk.NewContext(context.Background(), "t", nil)
	ctx.Dirs = &pb.Dirs{Input: dir}
	tests := []struct {
		name, file, alpha string
		pixels            []color.NRGBA
		mask              []byte
	}{
		{"white", "a.png", "white", []color.NRGBA{{255, 255, 255, 255}, {255, 127, 127, 255}}, []byte{0, 128}},
		{"keep", "a.png", "keep", []color.NRGBA{{0, 0, 0, 0}, {255, 0, 0, 128}}, []byte{0, 128}},
		{"opaque", "opaque.png", "white", []color.NRGBA{{0, 0, 0, 255}, {1, 0, 0, 255}}, []byte{255, 255, 255, 255, 255, 255}},
	}
	for _, tt := range tests {
		out, err := loadImage(ctx, loadIn{Image: tt.file, Alpha: tt.alpha})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		img := out.Image.Batch[0]
		for i, want := range tt.pixels {
			if c := img.NRGBAAt(i, 0); c != want {
				t.Errorf("%s: pixel %d = %v, want %v", tt.name, i, c, want)
			}
		}
		tn := out.Mask.GetTensor()
		if out.Mask.GetType() != "MASK" || tn.GetDtype() != pb.Tensor_UINT8 || len(tn.GetShape()) != 3 || !bytes.Equal(tn.GetData(), tt.mask) {
			t.Errorf("%s: mask %s %v %v %v, want MASK uint8 [1,H,W] %v", tt.name, out.Mask.GetType(), tn.GetDtype(), tn.GetShape(), tn.GetData(), tt.mask)
		}
	}
}

func TestMaxPixelsEnv(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	png.Encode(&buf, image.NewNRGBA(image.Rect(0, 0, 100, 100)))
	p := filepath.Join(dir, "x.png")
	os.WriteFile(p, buf.Bytes(), 0o644)
	tests := []struct {
		env, want string
	}{
		{"", ""},
		{"10000", ""},
		{"9999", "over the limit of 9999 pixels"},
		{"2000000", ""},
		{"abc", `FACE0_MAX_PIXELS="abc" is not a positive whole number`},
		{"-5", "not a positive whole number"},
	}
	for _, tt := range tests {
		t.Setenv(EnvMaxPixels, tt.env)
		_, err := decodeFile(p, "x.png")
		if tt.want == "" {
			if err != nil {
				t.Errorf("FACE0_MAX_PIXELS=%q: %v", tt.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FACE0_MAX_PIXELS=%q: err = %v, want %q", tt.env, err, tt.want)
		}
	}
}
