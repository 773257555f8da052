package face

import (
	"context"
	"fmt"
	"image"
	"path/filepath"

	"github.com/face0/face0/ml/crop"
	"github.com/face0/face0/ml/ort"
	pb "github.com/face0/face0/plugins/proto"
)

// facenetSize is the side of facenet's (InceptionResnetV1's) input, which is
// also the paper's crop size.
const facenetSize = 160

// facenetPath resolves the facenet_model input like mtcnn_weights: empty is
// <models>/facenet/facenet.onnx, relative is inside the models folder,
// absolute is taken as is.
func facenetPath(dirs *pb.Dirs, input string) (string, error) {
	if input != "" && filepath.IsAbs(input) {
		return filepath.Clean(input), nil
	}
	m := dirs.GetModels()
	if m == "" {
		return "", fmt.Errorf("facenet: the host gave no models folder; set facenet_model to the absolute path of the ONNX file")
	}
	if input == "" {
		input = filepath.Join("facenet", "facenet.onnx")
	}
	return filepath.Join(m, input), nil
}

// facenetInput lays out a face image as facenet expects: resized to
// 160x160 (a non-square image is first padded to a centred square with
// black, keeping its aspect ratio), NCHW RGB, (x - 127.5) / 128 as in
// facenet-pytorch's fixed_image_standardization.
func facenetInput(img image.Image) ([]float32, error) {
	b := img.Bounds()
	sq := crop.Square(crop.Box{X1: float64(b.Min.X), Y1: float64(b.Min.Y), X2: float64(b.Max.X), Y2: float64(b.Max.Y)})
	m, err := crop.Extract(img, sq, facenetSize)
	if err != nil {
		return nil, err
	}
	const plane = facenetSize * facenetSize
	x := make([]float32, 3*plane)
	for i := 0; i < plane; i++ {
		for c := 0; c < 3; c++ {
			x[c*plane+i] = (float32(m.Pix[4*i+c]) - 127.5) / 128
		}
	}
	return x, nil
}

// facenetEmbed runs the user's facenet ONNX on a face image. Sessions live
// in ml/ort's process-wide cache, so the model loads once per plugin process
// and stays warm while it fits the cache's budget.
func facenetEmbed(ctx context.Context, dirs *pb.Dirs, input string, img image.Image) ([]float32, error) {
	p, err := facenetPath(dirs, input)
	if err != nil {
		return nil, err
	}
	if !fileExists(p) {
		return nil, fmt.Errorf("facenet model not found at %s: the facenet model is an InceptionResnetV1 (e.g. facenet-pytorch's, vggface2) exported to ONNX with input [1,3,160,160]; put it at <models folder>/facenet/facenet.onnx, or set the facenet_model input to its path", p)
	}
	s, release, err := ort.Shared().Acquire(p, ort.Options{})
	if err != nil {
		return nil, fmt.Errorf("facenet: %w", err)
	}
	defer release()
	ins, outs := s.Inputs(), s.Outputs()
	if len(ins) != 1 || len(outs) < 1 {
		return nil, fmt.Errorf("facenet model %s has %d inputs and %d outputs; want one image input [1,3,160,160] and the embedding as the first output", p, len(ins), len(outs))
	}
	x, err := facenetInput(img)
	if err != nil {
		return nil, err
	}
	res, err := s.RunContext(ctx, map[string]ort.Tensor{ins[0].Name: ort.F32(x, 1, 3, facenetSize, facenetSize)})
	if err != nil {
		return nil, fmt.Errorf("facenet: %w", err)
	}
	v := res[outs[0].Name].Float32()
	if len(v) == 0 {
		return nil, fmt.Errorf("facenet model %s: output %q is not a float32 vector", p, outs[0].Name)
	}
	return v, nil
}
