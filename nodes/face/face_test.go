package face

import (
	"context"
	"image"
	"image/color"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/crop"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
	"github.com/face0/face0/synthfaces"
)

func TestSelectFace(t *testing.T) {
	faces := []*Face{
		{Score: 0.9, Box: bx(0, 0, 10, 10)},
		{Score: 0.99, Box: bx(0, 0, 5, 5)},
		{Score: 0.6, Box: bx(0, 0, 20, 20)},
		{Score: 0.99, Box: bx(0, 0, 20, 20)},
	}
	tests := []struct {
		mode  string
		faces []*Face
		want  int
	}{
		{"largest", faces, 2}, // ties go to the earlier (better-scoring) face
		{"best", faces, 1},
		{"largest", faces[:2], 0},
		{"best", faces[2:], 1},
		{"largest", faces[:1], 0},
	}
	for _, tt := range tests {
		if got := selectFace(tt.faces, tt.mode); got != tt.want {
			t.Errorf("selectFace(%s, %d faces) = %d, want %d", tt.mode, len(tt.faces), got, tt.want)
		}
	}
}

func solid(w, h int, c color.NRGBA) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return m
}

func TestFaceRecordRoundTrip(t *testing.T) {
	f := &Face{
		Backend: BackendMTCNN, Score: 0.98, Box: bx(10, 20, 110, 140), Region: bx(0, 0, 150, 150),
		Landmarks: [][2]float64{{40, 60}, {80, 60}, {60, 90}, {45, 110}, {75, 110}},
		ImageW:    640, ImageH: 480, Crop: solid(160, 160, color.NRGBA{10, 20, 30, 255}),
	}
	v, err := f.Value()
	if err != nil {
		t.Fatal(err)
	}
	if v.GetType() != "FACE" {
		t.Errorf("type %q, want FACE", v.GetType())
	}
	g, err := ParseFace(v)
	if err != nil {
		t.Fatal(err)
	}
	if g.Backend != f.Backend || g.Score != f.Score || g.Box != f.Box || g.Region != f.Region ||
		g.ImageW != 640 || g.ImageH != 480 || len(g.Landmarks) != 5 || g.Landmarks[4] != f.Landmarks[4] {
		t.Errorf("round trip: got %+v", g)
	}
	if c := g.Crop.NRGBAAt(5, 5); c != (color.NRGBA{10, 20, 30, 255}) || g.Crop.Bounds().Dx() != 160 {
		t.Errorf("crop pixel %v, bounds %v", c, g.Crop.Bounds())
	}
	// JSON view (what `face0 run --json` prints) has the numbers, not pixels.
	j := value.ToJSON(v).(map[string]any)
	if j["score"] != 0.98 || j["backend"] != "mtcnn" {
		t.Errorf("ToJSON: %v", j)
	}
}

func TestParseFaceErrors(t *testing.T) {
	good, _ := (&Face{Box: bx(0, 0, 1, 1), Region: bx(0, 0, 1, 1), Crop: solid(4, 4, color.NRGBA{A: 255})}).Value()
	without := func(field string) *pb.Value {
		fields := map[string]*pb.Value{}
		for k, v := range good.GetRecord().Fields {
			if k != field {
				fields[k] = v
			}
		}
		return &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Fields: fields}}}
	}
	with := func(field string, v *pb.Value) *pb.Value {
		r := without(field)
		r.GetRecord().Fields[field] = v
		return r
	}
	tests := []struct {
		name string
		v    *pb.Value
		want string
	}{
		{"not a record", value.Int(3), "a FACE is a record, got an integer"},
		{"null", nullFace(), "a FACE is a record, got nothing"},
		{"no box", without("box"), `no "box" field`},
		{"no crop", without("crop"), `no "crop" image`},
		{"short box", with("box", floats(1, 2, 3)), `"box" must be a list of 4 numbers`},
		{"box of strings", with("box", &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{value.String("a"), value.Int(1), value.Int(1), value.Int(1)}}}}), `"box" item 0`},
		{"crop not image", with("crop", value.String("x")), `"crop": expected an IMAGE tensor`},
		{"score not number", with("score", value.String("x")), `"score"`},
		{"landmarks not list", with("landmarks", value.Int(1)), `"landmarks" must be a list`},
	}
	for _, tt := range tests {
		_, err := ParseFace(tt.v)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestDetectFaceNoFace covers the no_face behaviours on an image with no
// face in it, and the node's input errors.
func TestDetectFaceNoFace(t *testing.T) {
	testenvFaceAPI(t)
	blank := solid(96, 64, color.NRGBA{128, 128, 128, 255})
	in := detectInput(t, blank, BackendTiny)
	_, err := detectFace(testCtx(), in)
	if err == nil || !strings.Contains(err.Error(), "no face found in the 96x64 image by the tiny-face backend") {
		t.Errorf("no_face=error: err = %v", err)
	}
	in.NoFace = "pass"
	out, err := detectFace(testCtx(), in)
	if err != nil {
		t.Fatalf("no_face=pass: %v", err)
	}
	if !value.IsNull(out.Face) || out.Face.GetType() != "FACE" || !value.IsNull(out.Crop) || len(out.Faces.GetList().GetItems()) != 0 || out.Faces.GetType() != "FACE_LIST" {
		t.Errorf("no_face=pass: face %v, crop %v, faces %v", out.Face, out.Crop, out.Faces)
	}

	tests := []struct {
		name string
		mod  func(*detectIn)
		want string
	}{
		{"batch", func(in *detectIn) { in.Image.Batch = append(in.Image.Batch, blank) }, "takes one image, got a batch of 2"},
		{"probability threshold", func(in *detectIn) { in.Threshold = 5 }, "threshold 5: the tiny-face backend's score is a probability"},
		{"unknown backend", func(in *detectIn) { in.Backend = "haar" }, `unknown backend "haar"`},
		{"mtcnn weights missing", func(in *detectIn) { in.Backend = BackendMTCNN; in.MTCNNWeights = "" },
			"mtcnn weights not found at " + filepath.Join(testDirs.Models, "mtcnn", "mtcnn.safetensors") + ": "},
		{"mtcnn weights not safetensors", func(in *detectIn) {
			in.Backend = BackendMTCNN
			in.MTCNNWeights = filepath.Join(t.TempDir(), "w.safetensors")
			writeFile(t, in.MTCNNWeights, []byte("not safetensors"))
		}, "mtcnn: "},
	}
	for _, tt := range tests {
		in := detectInput(t, blank, BackendTiny)
		tt.mod(&in)
		_, err := detectFace(testCtx(), in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestEmbedFace(t *testing.T) {
	testenvFaceAPI(t)
	node := Pack("test").Nodes[1]
	if node.Spec().Type != "EmbedFace" {
		t.Fatalf("node 1 is %s", node.Spec().Type)
	}
	// The output's type parameter follows the model input.
	out := node.Spec().Outputs[0]
	if out.GetParam().GetFromInput() != "model" || out.GetParam().GetMap()[ModelFaceAPI] != "faceapi-128" {
		t.Errorf("embedding output param = %v", out.GetParam())
	}
	ctx := testCtx()
	face := &Face{Box: bx(0, 0, 160, 160), Region: bx(0, 0, 160, 160), Crop: solid(160, 160, color.NRGBA{200, 150, 120, 255})}
	fv, err := face.Value()
	if err != nil {
		t.Fatal(err)
	}
	imgv, _ := value.Images(solid(120, 150, color.NRGBA{200, 150, 120, 255}))
	tests := []struct {
		name     string
		inputs   map[string]*pb.Value
		wantNull bool
		wantErr  string
	}{
		{"face", map[string]*pb.Value{"face": fv}, false, ""},
		{"image", map[string]*pb.Value{"image": imgv}, false, ""},
		{"null face", map[string]*pb.Value{"face": nullFace()}, true, ""},
		{"nothing", map[string]*pb.Value{}, false, `connect a FACE (from DetectFace) to "face", or a cropped face IMAGE to "image"`},
		{"bad face", map[string]*pb.Value{"face": value.Int(1)}, false, `input "face": a FACE is a record`},
	}
	for _, tt := range tests {
		res, err := node.Execute(ctx, tt.inputs)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		e := res.Values["embedding"]
		if e.GetType() != "FACE_EMBEDDING:faceapi-128" {
			t.Errorf("%s: type %q", tt.name, e.GetType())
		}
		if tt.wantNull != value.IsNull(e) {
			t.Errorf("%s: null = %v, want %v", tt.name, value.IsNull(e), tt.wantNull)
		}
		if !tt.wantNull {
			if v, shape, err := value.AsFloat32(e); err != nil || len(v) != 128 || shape[0] != 128 {
				t.Errorf("%s: vector %d %v %v", tt.name, len(v), shape, err)
			}
		}
	}
	// The embedding of a face equals the one of its crop given as an image,
	// and is the same for the mirrored crop (flip-averaged).
	a, _ := embed(context.Background(), testDirs, ModelFaceAPI, "", face.Crop)
	b, _ := embed(context.Background(), testDirs, ModelFaceAPI, "", mirrorX(face.Crop))
	if c := cosine(a, b); c < 0.99999 {
		t.Errorf("mirrored crop: cosine %.6f, want 1", c)
	}
	if _, err := embed(context.Background(), testDirs, "facenet-x", "", face.Crop); err == nil || !strings.Contains(err.Error(), `unknown embedding model "facenet-x"`) {
		t.Errorf("unknown model: %v", err)
	}
}

func TestMirrorX(t *testing.T) {
	m := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	m.SetNRGBA(0, 0, color.NRGBA{1, 0, 0, 255})
	m.SetNRGBA(2, 0, color.NRGBA{3, 0, 0, 255})
	// A sub-image and a non-NRGBA image both mirror within their bounds.
	sub := m.SubImage(image.Rect(1, 0, 3, 1))
	gray := image.NewGray(image.Rect(5, 5, 7, 6))
	gray.SetGray(5, 5, color.Gray{9})
	tests := []struct {
		name string
		img  image.Image
		want []uint8 // red channel, left to right
	}{
		{"whole", m, []uint8{3, 0, 1}},
		{"sub-image", sub, []uint8{3, 0}},
		{"gray", gray, []uint8{0, 9}},
	}
	for _, tt := range tests {
		got := mirrorX(tt.img)
		for x, w := range tt.want {
			if r := got.NRGBAAt(x, 0).R; r != w {
				t.Errorf("%s: pixel %d red %d, want %d", tt.name, x, r, w)
			}
		}
	}
}

// detectFace must cut the crop from the configured margins: pixels scaling
// gives the paper's literal pixels.
func TestCropSettings(t *testing.T) {
	in := detectIn{MarginX: 10, MarginTop: 33, MarginBottom: 15, MarginScale: "pixels"}
	m, s := in.cropSettings()
	if got := crop.Expand(bx(0, 0, 320, 320), m, s); got != bx(-10, -33, 330, 335) {
		t.Errorf("pixels: %v", got)
	}
	in.MarginScale = "face"
	m, s = in.cropSettings()
	if got := crop.Expand(bx(0, 0, 320, 320), m, s); got != bx(-20, -66, 340, 350) {
		t.Errorf("face: %v", got)
	}
}

// TestEmbedSynthfaces: model synthfaces-id-64 is synthfaces.Embed on the
// given image, typed FACE_EMBEDDING:synthfaces-id-64.
func TestEmbedSynthfaces(t *testing.T) {
	node := Pack("test").Nodes[1]
	s := synthfaces.RenderSample(1, synthfaces.HeldOutBase, 0, synthfaces.RenderOptions{Size: 128})
	imgv, err := value.Images(s.Pixels)
	if err != nil {
		t.Fatal(err)
	}
	res, err := node.Execute(testCtx(), map[string]*pb.Value{"image": imgv, "model": value.String(ModelSynthfaces)})
	if err != nil {
		t.Fatal(err)
	}
	e := res.Values["embedding"]
	if e.GetType() != "FACE_EMBEDDING:"+synthfaces.IDSpace {
		t.Errorf("type %q, want FACE_EMBEDDING:%s", e.GetType(), synthfaces.IDSpace)
	}
	v, _, err := value.AsFloat32(e)
	if err != nil {
		t.Fatal(err)
	}
	want := synthfaces.Embed(s.Pixels).Vector
	if c := cosine(v, want); len(v) != len(want) || c < 0.99999 {
		t.Errorf("%d values, cosine to synthfaces.Embed %.6f; want %d values, 1", len(v), c, len(want))
	}
}
