package face

import (
	"context"
	"errors"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

// standInFacenet writes an ONNX model with facenet's interface (input
// [1,3,160,160], output a vector) whose output is computable by hand: the
// mean of each input channel, times a 3x4 matrix. No real facenet weights
// can be downloaded here; this checks the node's plumbing and
// preprocessing (layout, channel order, (x-127.5)/128) exactly.
func standInFacenet(t *testing.T) (path string, w []float32) {
	t.Helper()
	if err := ort.Init(); err != nil {
		if errors.Is(err, ort.ErrNoLibrary) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	w = []float32{1, 0, 0, 2, 0, 1, 0, 3, 0, 0, 1, 4}
	g := onnx.NewGraph("facenet-stand-in")
	x := g.Input("input", onnx.Float, 1, 3, 160, 160)
	y := g.MatMul(g.ReduceMean(x, false, 2, 3), g.Initializer("w", w, 3, 4))
	g.Output("embedding", y, 1, 4)
	path = filepath.Join(t.TempDir(), "facenet.onnx")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	return path, w
}

func TestFacenetEmbed(t *testing.T) {
	path, w := standInFacenet(t)
	// A uniform face: every channel's mean is its normalised value.
	c := color.NRGBA{255, 127, 0, 255}
	norm := []float64{(255 - 127.5) / 128, (127 - 127.5) / 128, (0 - 127.5) / 128}
	want := make([]float64, 4)
	for j := range want {
		for i := 0; i < 3; i++ {
			want[j] += norm[i] * float64(w[i*4+j])
		}
	}
	tests := []struct {
		name string
		w, h int
	}{
		{"160 square crop", 160, 160},
		{"other size", 200, 200},
	}
	for _, tt := range tests {
		v, err := embed(context.Background(), testDirs, ModelFacenet, path, solid(tt.w, tt.h, c))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(v) != 4 {
			t.Fatalf("%s: %d values, want 4", tt.name, len(v))
		}
		for j := range want {
			if math.Abs(float64(v[j])-want[j]) > 1e-4 {
				t.Errorf("%s: value %d = %v, want %v", tt.name, j, v[j], want[j])
			}
		}
	}
	// A non-square image is padded with black (normalised -0.996) to a
	// centred square: a 160x80 red strip keeps half its area red.
	v, err := embed(context.Background(), testDirs, ModelFacenet, path, solid(160, 80, color.NRGBA{255, 0, 0, 255}))
	if err != nil {
		t.Fatal(err)
	}
	black, red := (0-127.5)/128, (255-127.5)/128
	if wantR := (red + black) / 2; math.Abs(float64(v[0])-wantR) > 0.02 {
		t.Errorf("padded strip: red mean %v, want about %v", v[0], wantR)
	}

	// Through the node: the output is typed with the facenet space.
	node := Pack("test").Nodes[1]
	imgv, _ := value.Images(solid(160, 160, c))
	res, err := node.Execute(testCtx(), map[string]*pb.Value{"image": imgv, "model": value.String(ModelFacenet), "facenet_model": value.String(path)})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Values["embedding"]; e.GetType() != "FACE_EMBEDDING:facenet" {
		t.Errorf("type %q, want FACE_EMBEDDING:facenet", e.GetType())
	}
}

func TestFacenetErrors(t *testing.T) {
	img := solid(160, 160, color.NRGBA{A: 255})
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	writeFile(t, bad, []byte("not onnx"))
	tests := []struct {
		name, input, want string
	}{
		{"missing default", "", "facenet model not found at " + filepath.Join(testDirs.Models, "facenet", "facenet.onnx") + ": "},
		{"missing relative", "mine.onnx", "facenet model not found at " + filepath.Join(testDirs.Models, "mine.onnx")},
		{"not onnx", bad, "facenet: "},
	}
	for _, tt := range tests {
		_, err := embed(context.Background(), testDirs, ModelFacenet, tt.input, img)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		t.Logf("%s: %v", tt.name, err)
	}
}

// Replacing the embedding model's file changes EmbedFace's fingerprint, so a
// cached embedding computed with the old weights is not reused.
func TestEmbedFingerprintFollowsWeights(t *testing.T) {
	var node sdk.Node
	for _, n := range Pack("test").Nodes {
		if n.Spec().Type == "EmbedFace" {
			node = n
		}
	}
	if node == nil || !node.Spec().Fingerprint {
		t.Fatal("EmbedFace does not ask for a fingerprint")
	}
	fp, ok := node.(sdk.Fingerprinter)
	if !ok {
		t.Fatal("EmbedFace's node does not implement Fingerprint")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "f.onnx")
	os.WriteFile(path, []byte("one"), 0o644)
	req := &pb.FingerprintRequest{NodeType: "EmbedFace", Dirs: &pb.Dirs{Models: dir},
		Inputs: map[string]*pb.Value{"model": value.String(ModelFacenet), "facenet_model": value.String(path)}}
	a, err := fp.Fingerprint(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("replaced weights"), 0o644)
	b, _ := fp.Fingerprint(context.Background(), req)
	if string(a) == string(b) || len(a) == 0 {
		t.Fatalf("fingerprint did not change with the file: %q -> %q", a, b)
	}
}
