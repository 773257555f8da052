package image

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/face0/face0/internal/config"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

// LoadImage's image input is ComfyUI's list of the input folder's images,
// marked image_upload, so that editors and clients offer the files (and an
// upload button) and a name that is not there is refused before a run. The
// list is made afresh each time the host asks for specs; the server asks
// again after an upload and before it refuses a prompt.

// Bounds on the listing, so that a huge input folder costs little.
const (
	maxChoices    = 5000
	maxChoiceDeep = 4 // folder levels below the input folder
)

var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true}

// seenInput is the input folder of the latest request from the host, which
// is the truth once known; before that, $FACE0_INPUT (the host sets it when
// it starts the plugin), else the default home's.
var seenInput atomic.Pointer[string]

func noteInput(d *pb.Dirs) {
	if in := d.GetInput(); in != "" {
		seenInput.Store(&in)
	}
}

func inputRoot() string {
	if p := seenInput.Load(); p != nil {
		return *p
	}
	if d := os.Getenv("FACE0_INPUT"); d != "" {
		return d
	}
	return filepath.Join(config.Home(), "input")
}

// inputChoices lists the images in the input folder and its subfolders
// (names with '/'), sorted, leaving out hidden files and folders (and the
// server's half-written uploads, which are hidden).
func inputChoices() []string {
	root := inputRoot()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= maxChoices {
			if d != nil && d.IsDir() && p != root {
				return fs.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if strings.Count(filepath.ToSlash(rel), "/") >= maxChoiceDeep {
				return fs.SkipDir
			}
			return nil
		}
		if imageExts[strings.ToLower(filepath.Ext(d.Name()))] {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// uploadHint wraps LoadImage to mark its image input as ComfyUI's
// image_upload widget and say, when a name is refused, where files go.
type uploadHint struct{ sdk.Node }

func (n uploadHint) Spec() *pb.NodeSpec {
	spec := n.Node.Spec()
	for _, in := range spec.Inputs {
		if in.Name != "image" {
			continue
		}
		schema := map[string]any{}
		if in.Schema != "" {
			_ = json.Unmarshal([]byte(in.Schema), &schema)
		}
		schema["x-face0-widget"] = "image"
		schema["x-face0-hint"] = "upload the image (the editor's Upload button, or POST /upload/image) or copy it into the input folder " + inputRoot()
		b, _ := json.Marshal(schema)
		in.Schema = string(b)
	}
	return spec
}

// Fingerprint forwards to the wrapped node, which the embedding hides.
func (n uploadHint) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	noteInput(req.GetDirs())
	if f, ok := n.Node.(sdk.Fingerprinter); ok {
		return f.Fingerprint(ctx, req)
	}
	return nil, nil
}

var _ sdk.Fingerprinter = uploadHint{}
