package face

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	pigo "github.com/esimov/pigo/core"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/faceapi"
	"github.com/face0/face0/ml/mtcnn"
	pb "github.com/face0/face0/plugins/proto"
)

// Models load once per plugin process and stay warm: the process lives as
// long as the host, and loading costs far more than a detection (the MTCNN
// file is parsed and re-laid out, the face-api nets dequantised). They are
// keyed by kind and file path, so pointing a node at other weights loads
// those alongside. Failed loads are not remembered: the user may put the
// file in place and run again without restarting anything.
var models = struct {
	sync.Mutex
	m map[string]any
}{m: map[string]any{}}

// loadModel returns the model cached under kind and path, loading it with
// load on first use. The lock is held while loading so that two nodes asking
// for the same model at once load it once.
func loadModel[T any](kind, path string, load func(string) (T, error)) (T, error) {
	key := kind + "\x00" + path
	models.Lock()
	defer models.Unlock()
	if m, ok := models.m[key]; ok {
		return m.(T), nil
	}
	m, err := load(path)
	if err != nil {
		var zero T
		return zero, err
	}
	models.m[key] = m
	return m, nil
}

// faceAPIModelDir finds face-api's model/ folder holding the named model's
// manifest: first in the models folder (models/face-api/model), then where
// scripts/setup.sh unpacks the npm package.
func faceAPIModelDir(dirs *pb.Dirs, model string) (string, error) {
	manifest := model + "-weights_manifest.json"
	var tried []string
	if m := dirs.GetModels(); m != "" {
		d := filepath.Join(m, "face-api", "model")
		if fileExists(filepath.Join(d, manifest)) {
			return d, nil
		}
		tried = append(tried, d)
	}
	if pkg, err := assets.FaceAPIDir(); err == nil {
		d := filepath.Join(pkg, "model")
		if fileExists(filepath.Join(d, manifest)) {
			return d, nil
		}
		tried = append(tried, d)
	} else {
		tried = append(tried, filepath.Join(assets.CacheDir(), "face-api", "model"))
	}
	return "", fmt.Errorf("face-api model %s not found (looked in %v): run scripts/setup.sh, or copy the model/ folder of the npm package @vladmandic/face-api@1.7.15 to <models folder>/face-api/model", model, tried)
}

func ssdModel(dirs *pb.Dirs) (*faceapi.SSDMobileNetV1, error) {
	d, err := faceAPIModelDir(dirs, "ssd_mobilenetv1_model")
	if err != nil {
		return nil, err
	}
	return loadModel("ssd", d, faceapi.LoadSSDMobileNetV1)
}

func tinyModel(dirs *pb.Dirs) (*faceapi.TinyFaceDetector, error) {
	d, err := faceAPIModelDir(dirs, "tiny_face_detector_model")
	if err != nil {
		return nil, err
	}
	return loadModel("tiny", d, faceapi.LoadTinyFaceDetector)
}

func recognizerModel(dirs *pb.Dirs) (*faceapi.Recognizer, error) {
	d, err := faceAPIModelDir(dirs, "face_recognition_model")
	if err != nil {
		return nil, err
	}
	return loadModel("faceapi-128", d, faceapi.LoadRecognizer)
}

// mtcnnPath resolves the mtcnn_weights input: empty means the models
// folder's mtcnn/mtcnn.safetensors, a relative path is inside the models
// folder, an absolute path is taken as is (weights are the user's own files,
// like the models folder itself, not workflow inputs).
func mtcnnPath(dirs *pb.Dirs, input string) (string, error) {
	if input != "" && filepath.IsAbs(input) {
		return filepath.Clean(input), nil
	}
	m := dirs.GetModels()
	if m == "" {
		return "", errors.New("mtcnn: the host gave no models folder; set mtcnn_weights to the absolute path of mtcnn.safetensors")
	}
	if input == "" {
		input = filepath.Join("mtcnn", "mtcnn.safetensors")
	}
	return filepath.Join(m, input), nil
}

func mtcnnModel(dirs *pb.Dirs, input string) (*mtcnn.Detector, error) {
	p, err := mtcnnPath(dirs, input)
	if err != nil {
		return nil, err
	}
	if !fileExists(p) {
		return nil, fmt.Errorf("mtcnn weights not found at %s: the mtcnn backend needs facenet-pytorch's MTCNN weights as safetensors (see ml/mtcnn/README.md); put mtcnn.safetensors at <models folder>/mtcnn/mtcnn.safetensors, or set the mtcnn_weights input to its path", p)
	}
	return loadModel("mtcnn", p, mtcnn.Load)
}

// pigoPath finds pigo's facefinder cascade: models/pigo/facefinder, then
// where scripts/setup.sh copies it from the Go module cache.
func pigoPath(dirs *pb.Dirs) (string, error) {
	var tried []string
	if m := dirs.GetModels(); m != "" {
		p := filepath.Join(m, "pigo", "facefinder")
		if fileExists(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	p := filepath.Join(assets.CacheDir(), "pigo", "facefinder")
	if fileExists(p) {
		return p, nil
	}
	tried = append(tried, p)
	return "", fmt.Errorf("pigo cascade facefinder not found (looked in %v): run scripts/setup.sh, which copies cascade/facefinder from the Go module github.com/esimov/pigo@v1.4.6", tried)
}

func pigoModel(dirs *pb.Dirs) (*pigo.Pigo, error) {
	p, err := pigoPath(dirs)
	if err != nil {
		return nil, err
	}
	return loadModel("pigo", p, func(p string) (*pigo.Pigo, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		c, err := unpackPigo(data)
		if err != nil {
			return nil, fmt.Errorf("pigo cascade %s: %w", p, err)
		}
		return c, nil
	})
}

// unpackPigo guards pigo's Unpack, which indexes the file without bounds
// checks and panics on a truncated or foreign file.
func unpackPigo(data []byte) (c *pigo.Pigo, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("not a pigo cascade (%v)", r)
		}
	}()
	return pigo.NewPigo().Unpack(data)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// weightsFingerprint identifies the weights a backend would load (path, size
// and modification time), so that replacing a model file re-runs the node
// instead of serving a cached result computed with the old weights.
func weightsFingerprint(dirs *pb.Dirs, backend, mtcnnInput string) string {
	var p string
	var err error
	switch backend {
	case "mtcnn":
		p, err = mtcnnPath(dirs, mtcnnInput)
	case "pigo":
		p, err = pigoPath(dirs)
	case "tiny-face":
		p, err = faceAPIModelDir(dirs, "tiny_face_detector_model")
		p = filepath.Join(p, "tiny_face_detector_model-weights_manifest.json")
	default:
		p, err = faceAPIModelDir(dirs, "ssd_mobilenetv1_model")
		p = filepath.Join(p, "ssd_mobilenetv1_model-weights_manifest.json")
	}
	return fileStamp(p, err)
}

// embedWeightsFingerprint is weightsFingerprint for EmbedFace's models.
func embedWeightsFingerprint(dirs *pb.Dirs, model, facenetInput string) string {
	if model == ModelFacenet {
		return fileStamp(facenetPath(dirs, facenetInput))
	}
	d, err := faceAPIModelDir(dirs, "face_recognition_model")
	return fileStamp(filepath.Join(d, "face_recognition_model-weights_manifest.json"), err)
}

// fileStamp names a file's identity (path, size, modification time), or why
// it is missing.
func fileStamp(p string, err error) string {
	if err != nil {
		return "missing:" + err.Error()
	}
	st, err := os.Stat(p)
	if err != nil {
		return "missing:" + p
	}
	return fmt.Sprintf("%s:%d:%d", p, st.Size(), st.ModTime().UnixNano())
}
