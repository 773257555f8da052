package mtcnn

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/ml/nn"
	"github.com/face0/face0/ml/safetensors"
)

type goldenFace struct {
	Box       [4]float32    `json:"box"`
	Prob      float32       `json:"prob"`
	Landmarks [5][2]float32 `json:"landmarks"`
}

type goldenOutput struct {
	Shape  []int     `json:"shape"`
	Values []float64 `json:"values"`
}

type layerCheck struct {
	InputHWC  string       `json:"input_rgb_hwc_uint8_base64"`
	InputNHWC string       `json:"input_rgb_nhwc_uint8_base64"`
	Shape     []int        `json:"input_shape_nchw"`
	Reg       goldenOutput `json:"reg"`
	Prob      goldenOutput `json:"prob"`
	Landmarks goldenOutput `json:"landmarks"`
}

type golden struct {
	Samples []struct {
		File   string       `json:"file"`
		Width  int          `json:"width"`
		Height int          `json:"height"`
		Faces  []goldenFace `json:"faces"`
		Trace  struct {
			Scales []float64 `json:"scales"`
			PNet   []struct {
				InHW  [2]int `json:"in_hw"`
				OutHW [2]int `json:"out_hw"`
				Pass  int    `json:"prob_ge_0.6"`
			} `json:"pnet"`
			NMS []struct {
				In  int `json:"in"`
				Out int `json:"out"`
			} `json:"nms"`
			RNetIn   int `json:"rnet_in"`
			RNetPass int `json:"rnet_pass"`
			ONetIn   int `json:"onet_in"`
			ONetPass int `json:"onet_pass"`
		} `json:"trace"`
		GoImageJPEG struct {
			RGBSHA256 string       `json:"decoded_rgb_sha256"`
			Faces     []goldenFace `json:"faces"`
		} `json:"go_image_jpeg"`
	} `json:"samples"`
	PNetCheck layerCheck `json:"pnet_check"`
	RNetCheck layerCheck `json:"rnet_check"`
	ONetCheck layerCheck `json:"onet_check"`
}

func loadGolden(t testing.TB) *golden {
	t.Helper()
	data, err := os.ReadFile(testenv.Shared(t, "mtcnn", "golden_detections.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

var (
	detOnce sync.Once
	det     *Detector
	detErr  error
)

func loadDetector(t testing.TB) *Detector {
	t.Helper()
	path := testenv.Shared(t, "mtcnn", "mtcnn.safetensors")
	detOnce.Do(func() { det, detErr = Load(path) })
	if detErr != nil {
		t.Fatal(detErr)
	}
	return det
}

func decodeJPEG(t testing.TB, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// normalise maps 0..255 to about -1..1 as the reference does, in float32
// (the detector itself fuses this into its resize).
func normalise(v []float32) {
	for i, x := range v {
		v[i] = (x - 127.5) * 0.0078125
	}
}

// nchwInput turns the goldens' uint8 NHWC pixels into the normalised NCHW
// tensor the reference fed its network.
func nchwInput(t *testing.T, b64 string, shape []int) *nn.Tensor {
	t.Helper()
	pix, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	n, c, h, w := shape[0], shape[1], shape[2], shape[3]
	if len(pix) != n*c*h*w {
		t.Fatalf("input has %d bytes, want %d", len(pix), n*c*h*w)
	}
	x := nn.New(n, c, h, w)
	for b := range n {
		for y := range h {
			for xx := range w {
				for ch := range c {
					x.Data[((b*c+ch)*h+y)*w+xx] = float32(pix[((b*h+y)*w+xx)*c+ch])
				}
			}
		}
	}
	normalise(x.Data)
	return x
}

func compareOutput(t *testing.T, name string, got []float32, want goldenOutput) {
	t.Helper()
	if len(got) != len(want.Values) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want.Values))
	}
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i])-want.Values[i]))
	}
	t.Logf("%s: max deviation %.3g over %d values", name, worst, len(got))
	if worst > 1e-5 {
		t.Errorf("%s: max deviation %g exceeds 1e-5", name, worst)
	}
}

func TestPNetLayerCheck(t *testing.T) {
	g := loadGolden(t)
	d := loadDetector(t)
	c := g.PNetCheck
	prob, reg, oh, ow := d.p.forward(nchwInput(t, c.InputHWC, c.Shape))
	if oh != 27 || ow != 43 {
		t.Fatalf("P-Net map %dx%d, want 27x43", oh, ow)
	}
	var regAll, probAll []float32
	for _, r := range reg {
		regAll = append(regAll, r...)
	}
	for _, p := range prob {
		probAll = append(probAll, 1-p) // channel 0 is the non-face probability
	}
	probAll = append(probAll, prob...)
	compareOutput(t, "pnet reg", regAll, c.Reg)
	compareOutput(t, "pnet prob", probAll, c.Prob)
}

func TestRNetLayerCheck(t *testing.T) {
	g := loadGolden(t)
	d := loadDetector(t)
	c := g.RNetCheck
	prob, reg := d.r.forward(nchwInput(t, c.InputNHWC, c.Shape))
	var regAll, probAll []float32
	for i := range prob {
		regAll = append(regAll, reg[i][:]...)
		probAll = append(probAll, 1-prob[i], prob[i])
	}
	compareOutput(t, "rnet reg", regAll, c.Reg)
	compareOutput(t, "rnet prob", probAll, c.Prob)
}

func TestONetLayerCheck(t *testing.T) {
	g := loadGolden(t)
	d := loadDetector(t)
	c := g.ONetCheck
	prob, reg, lm := d.o.forward(nchwInput(t, c.InputNHWC, c.Shape))
	var regAll, probAll, lmAll []float32
	for i := range prob {
		regAll = append(regAll, reg[i][:]...)
		lmAll = append(lmAll, lm[i][:]...)
		probAll = append(probAll, 1-prob[i], prob[i])
	}
	compareOutput(t, "onet reg", regAll, c.Reg)
	compareOutput(t, "onet landmarks", lmAll, c.Landmarks)
	compareOutput(t, "onet prob", probAll, c.Prob)
}

func iou(a, b [4]float32) float64 {
	iw := math.Max(0, math.Min(float64(a[2]), float64(b[2]))-math.Max(float64(a[0]), float64(b[0])))
	ih := math.Max(0, math.Min(float64(a[3]), float64(b[3]))-math.Max(float64(a[1]), float64(b[1])))
	inter := iw * ih
	area := func(r [4]float32) float64 { return float64(r[2]-r[0]) * float64(r[3]-r[1]) }
	return inter / (area(a) + area(b) - inter)
}

type deviation struct{ box, lm, prob float64 }

// compareFaces matches each golden face to the detection it overlaps most
// and returns the largest deviations; it fails on missing or extra faces.
func compareFaces(t *testing.T, got []Face, want []goldenFace) deviation {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("found %d faces, want %d", len(got), len(want))
	}
	var dev deviation
	used := make([]bool, len(got))
	for wi, w := range want {
		best, bestIoU := -1, 0.5
		for i, g := range got {
			if o := iou(g.Box, w.Box); !used[i] && o > bestIoU {
				best, bestIoU = i, o
			}
		}
		if best < 0 {
			t.Errorf("golden face %d %v (prob %v) not found", wi, w.Box, w.Prob)
			continue
		}
		used[best] = true
		g := got[best]
		for k := range 4 {
			dev.box = math.Max(dev.box, math.Abs(float64(g.Box[k]-w.Box[k])))
		}
		for k := range 5 {
			for c := range 2 {
				dev.lm = math.Max(dev.lm, math.Abs(float64(g.Landmarks[k][c]-w.Landmarks[k][c])))
			}
		}
		dev.prob = math.Max(dev.prob, math.Abs(float64(g.Prob-w.Prob)))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Prob > got[i-1].Prob {
			t.Errorf("faces not sorted by probability: %v after %v", got[i].Prob, got[i-1].Prob)
		}
	}
	return dev
}

func rgbHash(img image.Image) string {
	m := newRGBImage(img)
	buf := make([]byte, 0, 3*m.h*m.w)
	for i := range m.h * m.w {
		buf = append(buf, m.pix[0][i], m.pix[1][i], m.pix[2][i])
	}
	s := sha256.Sum256(buf)
	return hex.EncodeToString(s[:])
}

// TestGoldenDetections runs the full detector on the four sample photos as
// Go decodes them and compares with both golden sets: tightly with the
// reference run on Go's own decode, loosely with the reference run on
// Pillow's decode (whose chroma upsampling differs).
func TestGoldenDetections(t *testing.T) {
	g := loadGolden(t)
	d := loadDetector(t)
	var tight, loose deviation
	for i, s := range g.Samples {
		t.Run(s.File, func(t *testing.T) {
			if i > 0 && (raceEnabled || testing.Short()) {
				t.Skip("-race or -short: only the first sample is checked")
			}
			img := decodeJPEG(t, testenv.FaceAPI(t, "demo", s.File))
			if b := img.Bounds(); b.Dx() != s.Width || b.Dy() != s.Height {
				t.Fatalf("image is %v, golden says %dx%d", b, s.Width, s.Height)
			}
			if h := rgbHash(img); h != s.GoImageJPEG.RGBSHA256 {
				t.Errorf("decoded RGB sha256 %s, want %s: the image-to-RGB conversion differs from the reference's", h, s.GoImageJPEG.RGBSHA256)
			}
			var tr trace
			faces, err := d.detect(img, &tr)
			if err != nil {
				t.Fatal(err)
			}
			checkTrace(t, &tr, s.Trace.Scales, s.Trace.PNet, s.Trace.NMS, [4]int{s.Trace.RNetIn, s.Trace.RNetPass, s.Trace.ONetIn, s.Trace.ONetPass})

			dt := compareFaces(t, faces, s.GoImageJPEG.Faces)
			t.Logf("vs go_image_jpeg: box %.2g px, landmarks %.2g px, prob %.2g", dt.box, dt.lm, dt.prob)
			if dt.box > 0.05 || dt.lm > 0.05 || dt.prob > 1e-4 {
				t.Errorf("vs go_image_jpeg: deviation box %g px, landmarks %g px, prob %g exceeds 0.05 px / 1e-4", dt.box, dt.lm, dt.prob)
			}
			dl := compareFaces(t, faces, s.Faces)
			t.Logf("vs Pillow decode: box %.3g px, landmarks %.3g px, prob %.3g", dl.box, dl.lm, dl.prob)
			if dl.box > 3 || dl.lm > 10 || dl.prob > 0.03 {
				t.Errorf("vs Pillow decode: deviation box %g px, landmarks %g px, prob %g exceeds 3 px / 10 px / 0.03", dl.box, dl.lm, dl.prob)
			}
			tight = deviation{math.Max(tight.box, dt.box), math.Max(tight.lm, dt.lm), math.Max(tight.prob, dt.prob)}
			loose = deviation{math.Max(loose.box, dl.box), math.Max(loose.lm, dl.lm), math.Max(loose.prob, dl.prob)}
		})
	}
	t.Logf("all samples, max vs go_image_jpeg: box %.3g px, landmarks %.3g px, prob %.3g", tight.box, tight.lm, tight.prob)
	t.Logf("all samples, max vs Pillow:        box %.3g px, landmarks %.3g px, prob %.3g", loose.box, loose.lm, loose.prob)
}

// checkTrace asserts the pyramid geometry, which does not depend on pixels,
// and logs the candidate counts, which were traced on Pillow's decode and
// so may differ slightly from a run on Go's decode.
func checkTrace(t *testing.T, tr *trace, scales []float64, pnet []struct {
	InHW  [2]int `json:"in_hw"`
	OutHW [2]int `json:"out_hw"`
	Pass  int    `json:"prob_ge_0.6"`
}, nms []struct {
	In  int `json:"in"`
	Out int `json:"out"`
}, stages [4]int) {
	t.Helper()
	if len(tr.scales) != len(scales) {
		t.Fatalf("%d pyramid scales, want %d", len(tr.scales), len(scales))
	}
	var got, want []string
	for i := range scales {
		if tr.scales[i] != scales[i] || tr.inHW[i] != pnet[i].InHW || tr.outHW[i] != pnet[i].OutHW {
			t.Errorf("scale %d: %v in %v out %v, want %v in %v out %v", i, tr.scales[i], tr.inHW[i], tr.outHW[i], scales[i], pnet[i].InHW, pnet[i].OutHW)
		}
		got = append(got, itoa(tr.pnetPass[i]))
		want = append(want, itoa(pnet[i].Pass))
	}
	t.Logf("P-Net cells >= 0.6 per scale: %s (Pillow-decode trace: %s)", strings.Join(got, " "), strings.Join(want, " "))
	got, want = nil, nil
	for _, n := range tr.nms {
		got = append(got, itoa(n[0])+">"+itoa(n[1]))
	}
	for _, n := range nms {
		want = append(want, itoa(n.In)+">"+itoa(n.Out))
	}
	t.Logf("NMS in>out: %s\n  Pillow-decode trace: %s", strings.Join(got, " "), strings.Join(want, " "))
	t.Logf("R-Net %d in %d pass, O-Net %d in %d pass (Pillow-decode trace: %d %d, %d %d)",
		tr.rnetIn, tr.rnetPass, tr.onetIn, tr.onetPass, stages[0], stages[1], stages[2], stages[3])
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestConcurrentDetect(t *testing.T) {
	d := loadDetector(t)
	img := decodeJPEG(t, testenv.FaceAPI(t, "demo", "sample1.jpg"))
	small := image.NewRGBA(image.Rect(0, 0, 640, 427))
	// A downscaled copy keeps the test quick while exercising every stage.
	m := newRGBImage(img)
	src := nn.New(1, 3, m.h, m.w)
	for c := range 3 {
		for i, v := range m.pix[c] {
			src.Data[c*m.h*m.w+i] = float32(v)
		}
	}
	res := nn.AreaResize(src, 427, 640)
	for y := range 427 {
		for x := range 640 {
			i := y*640 + x
			o := small.PixOffset(x, y)
			small.Pix[o] = uint8(res.Data[i])
			small.Pix[o+1] = uint8(res.Data[427*640+i])
			small.Pix[o+2] = uint8(res.Data[2*427*640+i])
			small.Pix[o+3] = 255
		}
	}
	want, err := d.Detect(small)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("no face on the downscaled sample1")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := d.Detect(small)
			if err != nil {
				t.Error(err)
				return
			}
			if len(got) != len(want) || got[0] != want[0] {
				t.Errorf("concurrent Detect gave %v, want %v", got, want)
			}
		}()
	}
	wg.Wait()
}

func TestImageConversions(t *testing.T) {
	img := decodeJPEG(t, testenv.FaceAPI(t, "demo", "sample2.jpg"))
	ycc, ok := img.(*image.YCbCr)
	if !ok {
		t.Fatalf("sample2 decodes to %T, want *image.YCbCr", img)
	}
	// A sub-image exercises non-zero bounds on both paths.
	sub := ycc.SubImage(image.Rect(101, 37, 400, 300))
	fast := newRGBImage(sub)
	slow := newRGBImage(struct{ image.Image }{sub}) // hides the concrete type
	rgba := image.NewRGBA(sub.Bounds())
	for y := sub.Bounds().Min.Y; y < sub.Bounds().Max.Y; y++ {
		for x := sub.Bounds().Min.X; x < sub.Bounds().Max.X; x++ {
			rgba.Set(x, y, sub.At(x, y))
		}
	}
	viaRGBA := newRGBImage(rgba)
	for c := range 3 {
		for i := range fast.pix[c] {
			if a, b, d := fast.pix[c][i], slow.pix[c][i], viaRGBA.pix[c][i]; a != b || a != d {
				t.Fatalf("channel %d pixel %d: YCbCr path %v, generic %v, RGBA %v", c, i, a, b, d)
			}
		}
	}
}

func TestDetectErrors(t *testing.T) {
	d := loadDetector(t)
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	tests := []struct {
		name string
		img  image.Image
		opts []Option
		want string
	}{
		{"nil image", nil, nil, "nil image"},
		{"empty image", image.NewRGBA(image.Rect(0, 0, 0, 10)), nil, "empty"},
		{"min face", img, []Option{MinFaceSize(0)}, "MinFaceSize"},
		{"factor", img, []Option{Factor(1)}, "Factor"},
		{"threshold", img, []Option{Thresholds(0.6, 1.5, 0.7)}, "threshold 2"},
	}
	for _, tc := range tests {
		if _, err := d.Detect(tc.img, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// Blank and tiny images are not errors: they simply have no faces.
	for _, im := range []image.Image{img, image.NewGray(image.Rect(0, 0, 5, 5))} {
		faces, err := d.Detect(im)
		if err != nil || len(faces) != 0 {
			t.Errorf("blank %v: faces %v, err %v; want none", im.Bounds(), faces, err)
		}
	}
	var zero *Detector
	if _, err := zero.Detect(img); err == nil {
		t.Error("nil Detector: no error")
	}
}

func TestOptionsChangeResult(t *testing.T) {
	d := loadDetector(t)
	img := decodeJPEG(t, testenv.FaceAPI(t, "demo", "sample4.jpg"))
	// The golden's weakest face has prob 0.91, so a 0.95 final threshold
	// must drop it while a large minimum face size removes small faces.
	faces, err := d.Detect(img, Thresholds(0.6, 0.7, 0.95), MinFaceSize(40), Factor(0.709))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range faces {
		if f.Prob <= 0.95 {
			t.Errorf("face with prob %v passed a 0.95 threshold", f.Prob)
		}
	}
	if len(faces) == 0 || len(faces) >= 5 {
		t.Errorf("%d faces with threshold 0.95, want between 1 and 4", len(faces))
	}
}

// TestBadWeights rewrites the real weights file with one tensor missing,
// mis-shaped or corrupted and expects Load to name it.
func TestBadWeights(t *testing.T) {
	path := testenv.Shared(t, "mtcnn", "mtcnn.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]safetensors.Tensor{}
	for _, n := range f.Names() {
		base[n], _ = f.Tensor(n)
	}
	tests := []struct {
		name   string
		mutate func(map[string]safetensors.Tensor)
		want   string
	}{
		{"missing", func(m map[string]safetensors.Tensor) { delete(m, "onet.dense6_3.bias") }, `"onet.dense6_3.bias"`},
		{"missing prelu", func(m map[string]safetensors.Tensor) { delete(m, "rnet.prelu4.weight") }, `"rnet.prelu4.weight"`},
		{"mis-shaped", func(m map[string]safetensors.Tensor) {
			t := m["rnet.dense4.weight"]
			m["rnet.dense4.weight"] = safetensors.Tensor{DType: t.DType, Shape: []int{576, 128}, Data: t.Data}
		}, `"rnet.dense4.weight" has shape [576 128], want [128 576]`},
		{"head shape", func(m map[string]safetensors.Tensor) {
			t := m["pnet.conv4_2.weight"]
			m["pnet.conv4_2.weight"] = safetensors.Tensor{DType: t.DType, Shape: []int{4, 32}, Data: t.Data}
		}, `"pnet.conv4_2.weight"`},
		{"NaN", func(m map[string]safetensors.Tensor) {
			m["pnet.conv1.bias"] = safetensors.FromFloat32([]int{10}, []float32{float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0, 0, 0})
		}, `"pnet.conv1.bias" contains NaN`},
		{"integer dtype", func(m map[string]safetensors.Tensor) {
			m["onet.conv1.bias"] = safetensors.Tensor{DType: safetensors.I32, Shape: []int{32}, Data: make([]byte, 128)}
		}, `"onet.conv1.bias"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]safetensors.Tensor{}
			for k, v := range base {
				m[k] = v
			}
			tc.mutate(m)
			p := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := safetensors.Write(p, m); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: err = %v, want one containing %s", err, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.safetensors")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func BenchmarkDetect1920(b *testing.B) {
	d := loadDetector(b)
	img := decodeJPEG(b, testenv.FaceAPI(b, "demo", "sample1.jpg"))
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := d.Detect(img); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// TestResizeMatchesAreaResize checks that reading window sums off the
// integral image is bit-identical to the float32 area resize the reference
// uses, for pyramid levels, crops (also enlarged ones) and huge windows.
func TestResizeMatchesAreaResize(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 700, 400))
	for i := range src.Pix {
		src.Pix[i] = uint8((i*7919 + i/2800*31) % 251)
	}
	m := newRGBImage(src)
	full := nn.New(1, 3, m.h, m.w)
	for c := range 3 {
		for i, v := range m.pix[c] {
			full.Data[c*m.h*m.w+i] = float32(v)
		}
	}
	tests := []struct {
		name           string
		x0, y0, x1, y1 int
		oh, ow         int
	}{
		{"level", 0, 0, 700, 400, 241, 421},
		{"small level", 0, 0, 700, 400, 13, 19},
		{"crop", 100, 50, 288, 238, 24, 24},
		{"tiny crop enlarged", 600, 390, 610, 400, 48, 48},
		{"huge window", 0, 0, 700, 400, 1, 2},
	}
	for _, tc := range tests {
		got := make([]float32, 3*tc.oh*tc.ow)
		m.resizeInto(got, tc.x0, tc.y0, tc.x1, tc.y1, tc.oh, tc.ow, 0, 3*tc.oh)
		cw, ch := tc.x1-tc.x0, tc.y1-tc.y0
		crop := nn.New(1, 3, ch, cw)
		for c := range 3 {
			for y := range ch {
				copy(crop.Data[(c*ch+y)*cw:(c*ch+y+1)*cw], full.Data[c*m.h*m.w+(tc.y0+y)*m.w+tc.x0:])
			}
		}
		want := nn.AreaResize(crop, tc.oh, tc.ow)
		normalise(want.Data)
		for i := range got {
			if got[i] != want.Data[i] {
				t.Errorf("%s: element %d = %v, want %v", tc.name, i, got[i], want.Data[i])
				break
			}
		}
	}
}
