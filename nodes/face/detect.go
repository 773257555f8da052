package face

import (
	"fmt"
	"image"
	"math"
	"sort"

	pigo "github.com/esimov/pigo/core"
	xdraw "golang.org/x/image/draw"

	"github.com/face0/face0/ml/crop"
	"github.com/face0/face0/ml/faceapi"
	"github.com/face0/face0/ml/mtcnn"
	pb "github.com/face0/face0/plugins/proto"
)

// Backends DetectFace offers, in the order the editor lists them.
const (
	BackendSSD   = "ssd-mobilenet"
	BackendTiny  = "tiny-face"
	BackendMTCNN = "mtcnn"
	BackendPigo  = "pigo"
)

// defaultThreshold is each backend's own default score threshold, used when
// the threshold input is 0. They are on different scales: probabilities for
// the neural nets, pigo's cascade score (unbounded, 5 in pigo's examples).
var defaultThreshold = map[string]float64{
	BackendSSD:   0.5, // face-api's SsdMobilenetv1Options
	BackendTiny:  0.5, // face-api's TinyFaceDetectorOptions
	BackendMTCNN: 0.7, // facenet-pytorch's O-Net threshold
	BackendPigo:  5,
}

// detection is one face from any backend, in image pixels.
type detection struct {
	Box       crop.Box
	Score     float64
	Landmarks [][2]float64 // nil when the backend gives none
}

// detectOptions are the backend-independent settings.
type detectOptions struct {
	Backend      string
	Threshold    float64 // 0: the backend's default
	MinSize      float64 // smallest face (Box.Size) kept, pixels
	MTCNNWeights string
}

// detect runs a backend on img and returns its faces, best score first,
// none smaller than MinSize.
func detect(dirs *pb.Dirs, img image.Image, o detectOptions) ([]detection, error) {
	thr := o.Threshold
	if thr == 0 {
		thr = defaultThreshold[o.Backend]
	}
	var dets []detection
	switch o.Backend {
	case BackendSSD, BackendTiny:
		if !(thr > 0 && thr < 1) {
			return nil, fmt.Errorf("threshold %v: the %s backend's score is a probability, give a value between 0 and 1 (0 for its default %v)", thr, o.Backend, defaultThreshold[o.Backend])
		}
		var fd []faceapi.Detection
		if o.Backend == BackendSSD {
			m, err := ssdModel(dirs)
			if err != nil {
				return nil, err
			}
			if fd, err = m.Detect(img, faceapi.SSDOptions{MinConfidence: thr}); err != nil {
				return nil, err
			}
		} else {
			m, err := tinyModel(dirs)
			if err != nil {
				return nil, err
			}
			if fd, err = m.Detect(img, faceapi.TinyOptions{ScoreThreshold: thr}); err != nil {
				return nil, err
			}
		}
		for _, d := range fd {
			b := d.Box
			dets = append(dets, detection{Box: crop.Box{X1: b.X, Y1: b.Y, X2: b.X + b.Width, Y2: b.Y + b.Height}, Score: d.Score})
		}
	case BackendMTCNN:
		if !(thr > 0 && thr < 1) {
			return nil, fmt.Errorf("threshold %v: the mtcnn backend's score is a probability, give a value between 0 and 1 (0 for its default %v)", thr, defaultThreshold[BackendMTCNN])
		}
		m, err := mtcnnModel(dirs, o.MTCNNWeights)
		if err != nil {
			return nil, err
		}
		// P-Net and R-Net keep the reference's thresholds; the user's
		// threshold is the final (O-Net) one, whose probability is the
		// face's score.
		faces, err := m.Detect(img, mtcnn.MinFaceSize(max(o.MinSize, 1)), mtcnn.Thresholds(0.6, 0.7, float32(thr)))
		if err != nil {
			return nil, err
		}
		for _, f := range faces {
			d := detection{Box: crop.Box{X1: float64(f.Box[0]), Y1: float64(f.Box[1]), X2: float64(f.Box[2]), Y2: float64(f.Box[3])}, Score: float64(f.Prob)}
			for _, p := range f.Landmarks {
				d.Landmarks = append(d.Landmarks, [2]float64{float64(p[0]), float64(p[1])})
			}
			dets = append(dets, d)
		}
	case BackendPigo:
		if !(thr > 0) {
			return nil, fmt.Errorf("threshold %v: the pigo backend's score must be positive (0 for its default %v)", thr, defaultThreshold[BackendPigo])
		}
		m, err := pigoModel(dirs)
		if err != nil {
			return nil, err
		}
		dets = pigoDetect(m, img, thr, o.MinSize)
	default:
		return nil, fmt.Errorf("unknown backend %q (have %s, %s, %s, %s)", o.Backend, BackendSSD, BackendTiny, BackendMTCNN, BackendPigo)
	}
	kept := dets[:0]
	for _, d := range dets {
		if d.Box.Valid() && d.Box.Size() >= o.MinSize {
			kept = append(kept, d)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Score > kept[j].Score })
	return kept, nil
}

// Pigo's scan settings: pigo's own example values (window moves by 10% of
// its size, grows by 10% per scale, clusters overlapping by more than 20%
// IoU merge). Pigo scans a grayscale copy of the image no larger than
// pigoMaxSide: its cascade was trained on webcam-sized frames, and on the
// full 1920 px demo photos it found no more faces while producing eleven
// times the false positives, five times slower (measured on the six demo
// photos: 17 of 22 faces and 11 false positives at full size, 18 and 1 at
// 800 px). Windows smaller than pigoMinWindow pixels of the copy are not
// scanned, whatever min_size says.
const (
	pigoShift     = 0.1
	pigoScale     = 1.1
	pigoCluster   = 0.2
	pigoMaxSide   = 800
	pigoMinWindow = 20
)

// pigoDetect runs pigo's cascade over the image. Pigo reports a square
// window (centre, side) per face; windows mostly inside a better-scoring
// one are dropped, since clustering by IoU leaves a small window on part of
// a face next to the big one.
func pigoDetect(m *pigo.Pigo, img image.Image, thr, minSize float64) []detection {
	b := img.Bounds()
	gray := &image.Gray{Pix: grayscale(img), Stride: b.Dx(), Rect: image.Rect(0, 0, b.Dx(), b.Dy())}
	s := 1.0
	if side := max(b.Dx(), b.Dy()); side > pigoMaxSide {
		s = float64(pigoMaxSide) / float64(side)
		small := image.NewGray(image.Rect(0, 0, max(1, int(math.Round(float64(b.Dx())*s))), max(1, int(math.Round(float64(b.Dy())*s)))))
		xdraw.BiLinear.Scale(small, small.Rect, gray, gray.Rect, xdraw.Src, nil)
		gray = small
	}
	w, h := gray.Rect.Dx(), gray.Rect.Dy()
	// The scale actually applied per axis, after rounding the copy's size.
	sx, sy := float64(w)/float64(b.Dx()), float64(h)/float64(b.Dy())
	params := pigo.CascadeParams{
		MinSize:     max(int(minSize*s), pigoMinWindow),
		MaxSize:     min(w, h),
		ShiftFactor: pigoShift,
		ScaleFactor: pigoScale,
		ImageParams: pigo.ImageParams{Pixels: gray.Pix, Rows: h, Cols: w, Dim: w},
	}
	if params.MinSize > params.MaxSize {
		return nil
	}
	raw := m.ClusterDetections(m.RunCascade(params, 0), pigoCluster)
	var dets []detection
	for _, d := range raw {
		if float64(d.Q) < thr {
			continue
		}
		half := float64(d.Scale) / 2
		cx, cy := float64(d.Col), float64(d.Row)
		box := crop.Box{
			X1: float64(b.Min.X) + (cx-half)/sx, Y1: float64(b.Min.Y) + (cy-half)/sy,
			X2: float64(b.Min.X) + (cx+half)/sx, Y2: float64(b.Min.Y) + (cy+half)/sy,
		}
		dets = append(dets, detection{Box: box, Score: float64(d.Q)})
	}
	sort.SliceStable(dets, func(i, j int) bool { return dets[i].Score > dets[j].Score })
	var kept []detection
	for _, d := range dets {
		inside := false
		for _, k := range kept {
			if overlapOfSmaller(d.Box, k.Box) > 0.5 {
				inside = true
				break
			}
		}
		if !inside {
			kept = append(kept, d)
		}
	}
	return kept
}

// overlapOfSmaller is the intersection of a and b over the smaller one's area.
func overlapOfSmaller(a, b crop.Box) float64 {
	w := min(a.X2, b.X2) - max(a.X1, b.X1)
	h := min(a.Y2, b.Y2) - max(a.Y1, b.Y1)
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h / min(a.Area(), b.Area())
}

// grayscale is pigo's luma formula (RgbToGrayscale) read straight from the
// pixel buffer: pigo's own version calls At per pixel, which costs more
// than the cascade on a 1920 px photo.
func grayscale(img image.Image) []uint8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, w*h)
	luma := func(r, g, bl uint32) uint8 {
		return uint8((0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 256)
	}
	if n, ok := img.(*image.NRGBA); ok {
		for y := 0; y < h; y++ {
			row := n.Pix[n.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				p := row[4*x:]
				// 16-bit values as color.RGBA() would give for opaque pixels.
				out[y*w+x] = luma(uint32(p[0])*0x101, uint32(p[1])*0x101, uint32(p[2])*0x101)
			}
		}
		return out
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			out[y*w+x] = luma(r, g, bl)
		}
	}
	return out
}
