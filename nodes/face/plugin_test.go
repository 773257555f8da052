package face_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// The face0 binary is built once per test binary run, and only by the tests
// that need plugin processes.
var (
	face0Once sync.Once
	face0Bin  string
	face0Err  error
)

func face0(t *testing.T) string {
	t.Helper()
	face0Once.Do(func() {
		dir, err := os.MkdirTemp("", "face0-face-plugin-test-")
		if err != nil {
			face0Err = err
			return
		}
		face0Bin, face0Err = testplugin.Face0(dir)
	})
	if face0Err != nil {
		t.Fatal(face0Err)
	}
	return face0Bin
}

// rig runs workflows on the real image and face packs, each in its own
// plugin process started from the face0 binary, as `face0 run` does.
type rig struct {
	cat  *engine.Catalog
	eng  *engine.Engine
	dirs *pb.Dirs
}

// newRig makes the folders, puts files into the input folder and starts the
// packs, in that order: LoadImage lists the input folder's images when the
// host asks for its spec, as `face0 run` and the server do.
func newRig(t *testing.T, files map[string][]byte) *rig {
	bin := face0(t)
	root := t.TempDir()
	dirs := &pb.Dirs{Input: filepath.Join(root, "input"), Output: filepath.Join(root, "output"), Temp: filepath.Join(root, "temp"), Models: filepath.Join(root, "models")}
	for _, d := range []string{dirs.Input, dirs.Output, dirs.Temp, dirs.Models} {
		os.MkdirAll(d, 0o755)
	}
	for n, d := range files {
		if err := os.WriteFile(filepath.Join(dirs.Input, n), d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"FACE0_INPUT=" + dirs.Input, "FACE0_MODELS=" + dirs.Models}
	mgr, problems := host.Start(context.Background(), []host.Source{
		{Name: "image", Path: bin, Args: []string{"plugin", "image"}, Env: env},
		{Name: "face", Path: bin, Args: []string{"plugin", "face"}, Env: env},
	}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start packs: %v", problems)
	}
	t.Cleanup(mgr.Close)
	cat, errs := engine.NewCatalog(mgr.Nodes(), mgr.Types())
	if len(errs) > 0 {
		t.Fatalf("catalog: %v", errs)
	}
	return &rig{cat: cat, eng: engine.New(mgr, engine.WithDirs(dirs)), dirs: dirs}
}

// run compiles and runs a workflow; a workflow the catalog refuses is an
// error like a failed run.
func (r *rig) run(t *testing.T, src string, outputs ...string) (*engine.Result, error) {
	t.Helper()
	w, _, err := workflow.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	plan, err := r.cat.Compile(w, outputs)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return r.eng.Run(context.Background(), plan, engine.RunOptions{PromptID: "t"})
}

// pipeline is LoadImage -> DetectFace -> EmbedFace, saving the crop.
func pipeline(file, backend, noFace string) string {
	return fmt.Sprintf(`{"version":1,"nodes":[
 {"id":"load","type":"LoadImage","inputs":{"image":%q}},
 {"id":"detect","type":"DetectFace","inputs":{"image":{"node":"load","output":"IMAGE"},"backend":%q,"no_face":%q}},
 {"id":"embed","type":"EmbedFace","inputs":{"face":{"node":"detect","output":"face"}}},
 {"id":"save","type":"SaveImage","inputs":{"images":{"node":"detect","output":"crop"},"filename_prefix":"face/crop"}}]}`, file, backend, noFace)
}

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

// TestPipelineThroughPlugins runs the example pipeline through the engine
// and real plugin processes: good photo, photo with no face, and bad files.
func TestPipelineThroughPlugins(t *testing.T) {
	photo, err := os.ReadFile(testenv.FaceAPI(t, "demo", "sample1.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var blank bytes.Buffer
	png.Encode(&blank, image.NewGray(image.Rect(0, 0, 96, 64)))
	files := map[string][]byte{
		"sample1.jpg":   photo,
		"blank.png":     blank.Bytes(),
		"empty.jpg":     nil,
		"truncated.jpg": photo[:len(photo)/3],
		"bomb.png":      pngHeader(100000, 100000),
		"notimage.jpg":  []byte("hello, this is text, not an image"),
	}
	r := newRig(t, files)
	os.WriteFile(filepath.Join(filepath.Dir(r.dirs.Input), "secret.jpg"), photo, 0o644)

	t.Run("bad images", func(t *testing.T) {
		tests := []struct{ file, want string }{
			{"empty.jpg", `image "empty.jpg" is an empty file`},
			{"truncated.jpg", `image "truncated.jpg": corrupt or truncated jpeg data`},
			{"bomb.png", `image "bomb.png" is 100000x100000 pixels, over the limit`},
			{"notimage.jpg", `image "notimage.jpg" is not a PNG, JPEG, GIF or WebP image`},
			// Names that are not among the input folder's images are
			// refused before anything runs, naming the input.
			{"../secret.jpg", `input image: value "../secret.jpg" is not valid`},
			{"missing.jpg", `input image: value "missing.jpg" is not valid`},
		}
		for _, tt := range tests {
			_, err := r.run(t, pipeline(tt.file, "tiny-face", "error"), "save", "embed")
			if err == nil || !strings.Contains(err.Error(), "node load (LoadImage)") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want node load's error %q", tt.file, err, tt.want)
			}
		}
	})

	t.Run("no face", func(t *testing.T) {
		_, err := r.run(t, pipeline("blank.png", "tiny-face", "error"), "embed")
		if err == nil || !strings.Contains(err.Error(), "node detect (DetectFace): no face found in the 96x64 image") {
			t.Errorf("no_face=error: %v", err)
		}
		res, err := r.run(t, pipeline("blank.png", "tiny-face", "pass"), "embed", "detect")
		if err != nil {
			t.Fatalf("no_face=pass: %v", err)
		}
		if e := res.Outputs["embed"].GetValues()["embedding"]; e == nil || !value.IsNull(e) {
			t.Errorf("no_face=pass: embedding %v, want null", e)
		}
		if f := res.Outputs["detect"].GetValues()["face"]; f == nil || !value.IsNull(f) {
			t.Errorf("no_face=pass: face %v, want null", f)
		}
	})

	// After all those failures the plugins still serve the real pipeline:
	// the example workflow, whose photo the input folder holds.
	t.Run("example workflow", func(t *testing.T) {
		example, err := os.ReadFile(filepath.Join("..", "..", "examples", "workflows", "face-embed.json"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.run(t, string(example), "save", "embed", "detect")
		if err != nil {
			t.Fatal(err)
		}
		e := res.Outputs["embed"].GetValues()["embedding"]
		vec, _, err := value.AsFloat32(e)
		if err != nil || len(vec) != 128 || e.GetType() != "FACE_EMBEDDING:faceapi-128" {
			t.Errorf("embedding %s, %d values, %v", e.GetType(), len(vec), err)
		}
		faces := res.Outputs["detect"].GetValues()["faces"].GetList().GetItems()
		if len(faces) != 3 {
			t.Errorf("faces: %d, want 3", len(faces))
		}
		saved, _ := filepath.Glob(filepath.Join(r.dirs.Output, "face", "crop_*.png"))
		if len(saved) != 1 {
			t.Fatalf("saved crops: %v", saved)
		}
		f, _ := os.Open(saved[0])
		defer f.Close()
		cfg, err := png.DecodeConfig(f)
		if err != nil || cfg.Width != 160 || cfg.Height != 160 {
			t.Errorf("saved crop %dx%d, %v; want 160x160", cfg.Width, cfg.Height, err)
		}
	})

	// The mtcnn backend without weights in the models folder says where to
	// put them.
	t.Run("mtcnn without weights", func(t *testing.T) {
		_, err := r.run(t, pipeline("sample1.jpg", "mtcnn", "error"), "embed")
		want := "mtcnn weights not found at " + filepath.Join(r.dirs.Models, "mtcnn", "mtcnn.safetensors")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}
