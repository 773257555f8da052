package image

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
)

// pngHeader is a valid PNG signature and IHDR claiming w x h, with no data:
// the shape of a decompression bomb.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.WriteString("IHDR")
	b.Write(ihdr)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte("IHDR"), ihdr...)))
	return b.Bytes()
}

func TestLoadImageBadInputs(t *testing.T) {
	dir := t.TempDir()
	var good bytes.Buffer
	png.Encode(&good, image.NewNRGBA(image.Rect(0, 0, 8, 8)))
	files := map[string][]byte{
		"good.png":      good.Bytes(),
		"empty.png":     nil,
		"truncated.png": good.Bytes()[:len(good.Bytes())/2],
		"text.png":      []byte("hello, not an image"),
		"bomb.png":      pngHeader(100000, 100000),
	}
	for n, d := range files {
		os.WriteFile(filepath.Join(dir, n), d, 0o644)
	}
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.png"), good.Bytes(), 0o644)
	os.Symlink(filepath.Join(outside, "secret.png"), filepath.Join(dir, "link.png"))
	dirs := &pb.Dirs{Input: dir}
	tests := []struct{ name, want string }{
		{"good.png", ""},
		{"empty.png", "empty file"},
		{"truncated.png", "corrupt or truncated"},
		{"text.png", "not a PNG, JPEG"},
		{"bomb.png", "over the limit"},
		{"../x.png", "not a path outside"},
		{"/etc/passwd", "not a path outside"},
		{"link.png", "outside the input folder"},
		{"missing.png", "not found"},
		{"", "no image file"},
	}
	for _, tt := range tests {
		var err error
		p, err := resolveInput(dirs, tt.name)
		if err == nil {
			_, err = decodeFile(p, tt.name)
		}
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
