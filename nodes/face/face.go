// Package face is the built-in face pack: DetectFace finds faces and cuts the
// Face0 crop (FACE0-PAPER.md section 2.3), EmbedFace turns a crop into a face
// embedding. The detectors and the default embedder are the pure-Go model
// ports in ml/faceapi and ml/mtcnn, plus github.com/esimov/pigo; the facenet
// embedder runs a user-supplied ONNX through ml/ort. See README.md for the
// backends, the crop rule and measured accuracy and speed.
package face

import (
	"context"
	"fmt"
	"image"
	"image/draw"
	"sort"

	"github.com/face0/face0/ml/crop"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
	"github.com/face0/face0/synthfaces"
)

// Pack returns the built-in face pack.
func Pack(version string) sdk.Pack {
	return sdk.Pack{
		Name: "face", Version: version,
		Types: []*pb.TypeSpec{{Name: typeFaceList, Description: "all faces found in an image, best score first (a list of FACE records)", Color: "#ffcc80"}},
		Nodes: []sdk.Node{
			sdk.Func("DetectFace", detectFace, sdk.Category("face"), sdk.DisplayName("Detect Face"),
				sdk.Describe("Finds faces and cuts the Face0 crop of the chosen one: its box widened by the paper's margins (scaled to the face), squared, and resized to 160x160."),
				sdk.WithFingerprint(detectFingerprint)),
			nullPassing{sdk.Func("EmbedFace", embedFace, sdk.Category("face"), sdk.DisplayName("Embed Face"),
				sdk.Describe("Turns a face crop into a face embedding. A missing face (DetectFace with no_face=pass) gives a null embedding."),
				sdk.TypeParam("embedding", "model", embeddingSpaces),
				sdk.WithFingerprint(embedFingerprint))},
		},
	}
}

// embeddingSpaces maps each EmbedFace model to the space its vectors live
// in, which becomes the FACE_EMBEDDING type parameter: a sampler trained on
// one space refuses another at validation time.
func embeddingSpaces() map[string]string {
	return map[string]string{ModelFaceAPI: ModelFaceAPI, ModelFacenet: ModelFacenet, ModelSynthfaces: synthfaces.IDSpace}
}

type detectIn struct {
	Image        sdk.Image `face0:"image" doc:"one image (a batch of one)"`
	Backend      string    `face0:"backend,enum=ssd-mobilenet|tiny-face|mtcnn|pigo,default=ssd-mobilenet" doc:"ssd-mobilenet: face-api's SSD (default, most complete); tiny-face: face-api's fast detector, misses small and turned faces; mtcnn: the paper's detector, gives 5 landmarks, needs mtcnn.safetensors; pigo: a pixel-intensity cascade, fastest, frontal faces only, weakest"`
	Threshold    float64   `face0:"threshold,min=0,max=1000,step=0.05,default=0" doc:"minimum score; 0 uses the backend's default (0.5 ssd-mobilenet and tiny-face, 0.7 mtcnn, 5 pigo, whose score is not a probability)"`
	MinSize      int       `face0:"min_size,min=1,max=100000,default=20" doc:"smallest face kept, pixels (sqrt of box area); the paper keeps faces over 20 px"`
	Select       string    `face0:"select,enum=largest|best,default=largest" doc:"which face the face and crop outputs give: the largest box (the paper's choice) or the highest score"`
	MarginX      float64   `face0:"margin_x,min=0,max=10000,default=10" doc:"added left and right of the box (paper: 10)"`
	MarginTop    float64   `face0:"margin_top,min=0,max=10000,default=33" doc:"added above the box (paper: 33)"`
	MarginBottom float64   `face0:"margin_bottom,min=0,max=10000,default=15" doc:"added below the box (paper: 15)"`
	MarginScale  string    `face0:"margin_scale,enum=face|pixels,default=face" doc:"face: margins are pixels for a 160 px face and scale with the face size; pixels: added as given"`
	CropSize     int       `face0:"crop_size,min=8,max=2048,default=160" doc:"side of the square crop (paper: 160)"`
	NoFace       string    `face0:"no_face,enum=error|pass,default=error" doc:"when no face is found: fail, or pass a null FACE that later nodes treat as no face"`
	MTCNNWeights string    `face0:"mtcnn_weights,maxlen=4096,default=" doc:"mtcnn backend only: path of mtcnn.safetensors; empty means <models folder>/mtcnn/mtcnn.safetensors, a relative path is inside the models folder"`
}

type detectOut struct {
	Face  sdk.Raw `face0:"face,type=FACE" doc:"the chosen face, or null (no_face=pass)"`
	Faces sdk.Raw `face0:"faces,type=FACE_LIST" doc:"every face found, best score first"`
	Crop  sdk.Raw `face0:"crop,type=IMAGE" doc:"the chosen face's Face0 crop, or null"`
}

// detectFingerprint adds the identity of the backend's weight file to the
// cache key, so that replacing the weights re-runs detection.
func detectFingerprint(_ context.Context, dirs *pb.Dirs, in map[string]*pb.Value) ([]byte, error) {
	backend, weights := BackendSSD, ""
	if v, ok := in["backend"]; ok && !value.IsNull(v) {
		backend, _ = value.AsString(v)
	}
	if v, ok := in["mtcnn_weights"]; ok && !value.IsNull(v) {
		weights, _ = value.AsString(v)
	}
	return []byte(weightsFingerprint(dirs, backend, weights)), nil
}

// cropSettings turns the node's margin inputs into the crop rule.
func (in detectIn) cropSettings() (crop.Margins, crop.Scaling) {
	s := crop.Proportional
	if in.MarginScale == "pixels" {
		s = crop.Absolute
	}
	return crop.Margins{Left: in.MarginX, Right: in.MarginX, Top: in.MarginTop, Bottom: in.MarginBottom}, s
}

func detectFace(ctx *sdk.Context, in detectIn) (detectOut, error) {
	if n := len(in.Image.Batch); n != 1 {
		return detectOut{}, fmt.Errorf("DetectFace takes one image, got a batch of %d; detect each image separately", n)
	}
	img := in.Image.Batch[0]
	faces, err := findFaces(ctx, img, in)
	if err != nil {
		return detectOut{}, err
	}
	list := make([]*pb.Value, len(faces))
	for i, f := range faces {
		if list[i], err = f.Value(); err != nil {
			return detectOut{}, err
		}
	}
	out := detectOut{Faces: &pb.Value{Type: typeFaceList, Kind: &pb.Value_List{List: &pb.List{Items: list}}}}
	if len(faces) == 0 {
		b := img.Bounds()
		if in.NoFace != "pass" {
			return detectOut{}, fmt.Errorf("no face found in the %dx%d image by the %s backend (threshold %v, min_size %d px); try another backend, a lower threshold or min_size, or set no_face to pass", b.Dx(), b.Dy(), in.Backend, effectiveThreshold(in), in.MinSize)
		}
		ctx.Warnf("no face found in the %dx%d image; passing a null FACE", b.Dx(), b.Dy())
		out.Face, out.Crop = nullFace(), &pb.Value{Type: "IMAGE", Kind: &pb.Value_Null{Null: &pb.Null{}}}
		return out, nil
	}
	i := selectFace(faces, in.Select)
	out.Face = list[i]
	if out.Crop, err = value.Images(faces[i].Crop); err != nil {
		return detectOut{}, err
	}
	ctx.Preview(faces[i].Crop)
	return out, nil
}

func effectiveThreshold(in detectIn) float64 {
	if in.Threshold == 0 {
		return defaultThreshold[in.Backend]
	}
	return in.Threshold
}

// findFaces detects faces in img and cuts each one's crop, best score first.
func findFaces(ctx *sdk.Context, img *image.NRGBA, in detectIn) ([]*Face, error) {
	dets, err := detect(ctx.Dirs, img, detectOptions{
		Backend: in.Backend, Threshold: in.Threshold, MinSize: float64(in.MinSize), MTCNNWeights: in.MTCNNWeights,
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, s := in.cropSettings()
	b := img.Bounds()
	faces := make([]*Face, len(dets))
	for i, d := range dets {
		region := crop.Region(d.Box, m, s)
		c, err := crop.Extract(img, region, in.CropSize)
		if err != nil {
			return nil, fmt.Errorf("face %d (box %.0f,%.0f-%.0f,%.0f): %w", i, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2, err)
		}
		faces[i] = &Face{Backend: in.Backend, Score: d.Score, Box: d.Box, Landmarks: d.Landmarks, Region: region,
			ImageW: b.Dx(), ImageH: b.Dy(), Crop: c}
	}
	return faces, nil
}

// selectFace picks the face the single-face outputs give: "largest" is the
// paper's rule (the largest box area; the first, i.e. best-scoring, on a
// tie), "best" the highest score. faces must be non-empty.
func selectFace(faces []*Face, mode string) int {
	best := 0
	for i, f := range faces {
		switch mode {
		case "best":
			if f.Score > faces[best].Score {
				best = i
			}
		default:
			if f.Box.Area() > faces[best].Box.Area() {
				best = i
			}
		}
	}
	return best
}

// Embedding models.
const (
	ModelFaceAPI = "faceapi-128"
	ModelFacenet = "facenet"
	// ModelSynthfaces is synthfaces' identity embedder (synthfaces.Embed),
	// for cartoon faces like the shipped tiny model's; its vectors are in
	// the space of the same name.
	ModelSynthfaces = "synthfaces-id-64"
)

type embedIn struct {
	Face  sdk.Raw    `face0:"face,type=FACE,optional" doc:"a face from DetectFace; its crop is embedded"`
	Image *sdk.Image `face0:"image" doc:"an already-cropped face (a batch of one), used when no FACE is connected"`
	Model string     `face0:"model,enum=faceapi-128|facenet|synthfaces-id-64,default=faceapi-128" doc:"faceapi-128: face-api's 128-d ResNet descriptor (dlib), run in pure Go; facenet: the paper's embedder, a user-supplied InceptionResnetV1 ONNX run by onnxruntime; synthfaces-id-64: the synthfaces identity embedder (cartoon faces of the synthfaces dataset and the tiny model trained on it; give it the whole portrait image, no detection)"`
	// FacenetModel is only read for model=facenet.
	FacenetModel string `face0:"facenet_model,maxlen=4096,default=" doc:"facenet only: the ONNX file (input [1,3,160,160] RGB as (x-127.5)/128, output the embedding); empty means <models folder>/facenet/facenet.onnx, a relative path is inside the models folder"`
}

type embedOut struct {
	Embedding sdk.Raw `face0:"embedding,type=FACE_EMBEDDING" doc:"the face's vector, typed with its space (FACE_EMBEDDING:faceapi-128); null when the face was null"`
}

func embedFace(ctx *sdk.Context, in embedIn) (embedOut, error) {
	var img image.Image
	switch {
	case in.Face != nil:
		f, err := ParseFace(in.Face)
		if err != nil {
			return embedOut{}, fmt.Errorf("input \"face\": %w", err)
		}
		img = f.Crop
	case in.Image != nil && len(in.Image.Batch) > 0:
		if n := len(in.Image.Batch); n != 1 {
			return embedOut{}, fmt.Errorf("input \"image\": EmbedFace takes one face image, got a batch of %d", n)
		}
		img = in.Image.Batch[0]
	default:
		return embedOut{}, fmt.Errorf("connect a FACE (from DetectFace) to \"face\", or a cropped face IMAGE to \"image\"")
	}
	vec, err := embed(ctx, ctx.Dirs, in.Model, in.FacenetModel, img)
	if err != nil {
		return embedOut{}, err
	}
	return embedOut{Embedding: value.Float32Tensor(typeEmbed+":"+embeddingSpaces()[in.Model], vec, int64(len(vec)))}, nil
}

// embed runs an embedding model on a face image. facenetModel is the
// facenet_model input (facenet only).
func embed(ctx context.Context, dirs *pb.Dirs, model, facenetModel string, img image.Image) ([]float32, error) {
	switch model {
	case ModelFacenet:
		return facenetEmbed(ctx, dirs, facenetModel, img)
	case ModelSynthfaces:
		return synthfaces.Embed(img).Vector, nil
	case ModelFaceAPI:
		rec, err := recognizerModel(dirs)
		if err != nil {
			return nil, err
		}
		// The vector is the mean of the descriptors of the crop and of its
		// mirror image. The recogniser is not mirror-symmetric: on the demo
		// photos a face in the mirrored photo came out nearer to another
		// person than to itself for 3 of 22 faces; averaged, none does (see
		// README.md). Identity does not change in a mirror, so the mirror
		// half carries no information the embedding should keep.
		a, err := rec.Describe(img)
		if err != nil {
			return nil, err
		}
		b, err := rec.Describe(mirrorX(img))
		if err != nil {
			return nil, err
		}
		for i := range a {
			a[i] = (a[i] + b[i]) / 2
		}
		return a, nil
	}
	spaces := embeddingSpaces()
	names := make([]string, 0, len(spaces))
	for k := range spaces {
		names = append(names, k)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown embedding model %q (have %v)", model, names)
}

// nullPassing lets "no face" flow through EmbedFace: a FACE input that is
// present but null (DetectFace with no_face=pass) gives a null embedding
// without running the model. The SDK cannot tell such a value from an
// unconnected optional input, so this is checked on the raw inputs before
// they are decoded.
type nullPassing struct{ sdk.Node }

// Fingerprint forwards to the wrapped node: embedding an interface promotes
// only the interface's own methods.
func (n nullPassing) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	if f, ok := n.Node.(sdk.Fingerprinter); ok {
		return f.Fingerprint(ctx, req)
	}
	return nil, nil
}

// embedFingerprint adds the identity of the embedding model's weight file to
// the cache key, so that replacing the weights re-runs EmbedFace.
func embedFingerprint(_ context.Context, dirs *pb.Dirs, in map[string]*pb.Value) ([]byte, error) {
	model, facenet := ModelFaceAPI, ""
	if v, ok := in["model"]; ok && !value.IsNull(v) {
		model, _ = value.AsString(v)
	}
	if v, ok := in["facenet_model"]; ok && !value.IsNull(v) {
		facenet, _ = value.AsString(v)
	}
	return []byte(embedWeightsFingerprint(dirs, model, facenet)), nil
}

func (n nullPassing) Execute(ctx *sdk.Context, inputs map[string]*pb.Value) (*pb.Outputs, error) {
	if v, ok := inputs["face"]; ok && v != nil && value.IsNull(v) {
		model := ModelFaceAPI
		if m, ok := inputs["model"]; ok {
			if s, err := value.AsString(m); err == nil {
				model = s
			}
		}
		typ := typeEmbed
		if sp := embeddingSpaces()[model]; sp != "" {
			typ += ":" + sp
		}
		return &pb.Outputs{Values: map[string]*pb.Value{
			"embedding": {Type: typ, Kind: &pb.Value_Null{Null: &pb.Null{}}},
		}}, nil
	}
	return n.Node.Execute(ctx, inputs)
}

// mirrorX returns img flipped left to right, with bounds at the origin.
func mirrorX(img image.Image) *image.NRGBA {
	b := img.Bounds()
	src, ok := img.(*image.NRGBA)
	if !ok {
		src = image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		draw.Draw(src, src.Rect, img, b.Min, draw.Src)
		b = src.Rect
	}
	dst := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		s := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
		d := dst.Pix[dst.PixOffset(0, y):]
		for x := 0; x < b.Dx(); x++ {
			copy(d[4*(b.Dx()-1-x):4*(b.Dx()-x)], s[4*x:4*x+4])
		}
	}
	return dst
}
