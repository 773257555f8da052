package synthfaces

import (
	"fmt"
	"image"
	"math"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/face0/face0/internal/testenv"
	"github.com/face0/face0/ml/faceapi"
)

// TestFaceAPIEmbedder measures how the product's default embedder (face-api's
// 128-d descriptor, with its detectors) sees synthfaces. It takes a few
// minutes of CPU, so it runs only with SYNTHFACES_FACEAPI=1; the numbers are
// recorded in README.md.
func TestFaceAPIEmbedder(t *testing.T) {
	if os.Getenv("SYNTHFACES_FACEAPI") == "" {
		t.Skip("set SYNTHFACES_FACEAPI=1 to measure the face-api embedder on synthfaces (minutes)")
	}
	dir := testenv.FaceAPI(t, "model")
	rec, err := faceapi.LoadRecognizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	tiny, err := faceapi.LoadTinyFaceDetector(dir)
	if err != nil {
		t.Fatal(err)
	}
	ssd, err := faceapi.LoadSSDMobileNetV1(dir)
	if err != nil {
		t.Fatal(err)
	}
	const ids, per = 20, 4
	type face struct {
		id    int
		style string
		desc  []float32 // descriptor of the detected crop (SSD, else tiny), nil when none
		gt    []float32 // descriptor of the ground-truth face box crop
	}
	var faces []face
	detT, detS := map[string][2]int{}, map[string][2]int{}
	hit := func(dets []faceapi.Detection, box image.Rectangle) (faceapi.Detection, bool) {
		gb := faceapi.Box{X: float64(box.Min.X), Y: float64(box.Min.Y), Width: float64(box.Dx()), Height: float64(box.Dy())}
		for _, d := range dets {
			if faceapi.IoU(d.Box, gb) > 0.3 {
				return d, true
			}
		}
		return faceapi.Detection{}, false
	}
	inc := func(m map[string][2]int, k string, ok bool) {
		v := m[k]
		v[1]++
		if ok {
			v[0]++
		}
		m[k] = v
	}
	for i := 0; i < ids; i++ {
		for j := 0; j < per; j++ {
			s := RenderSample(1, HeldOutBase+i, j, RenderOptions{Size: 128})
			td, _ := tiny.Detect(s.Pixels, faceapi.TinyOptions{InputSize: 416})
			sd, _ := ssd.Detect(s.Pixels, faceapi.SSDOptions{})
			dt, okT := hit(td, s.FaceBox)
			ds, okS := hit(sd, s.FaceBox)
			inc(detT, s.Scene.Style, okT)
			inc(detS, s.Scene.Style, okS)
			f := face{id: i, style: s.Scene.Style}
			var d faceapi.Detection
			switch {
			case okS:
				d = ds
			case okT:
				d = dt
			}
			if okS || okT {
				crop := s.Pixels.SubImage(d.Box.Rect(s.Pixels.Bounds()))
				f.desc, _ = rec.Describe(crop)
			}
			gt := s.FaceBox.Inset(-s.FaceBox.Dx() / 10).Intersect(s.Pixels.Bounds())
			f.gt, _ = rec.Describe(s.Pixels.SubImage(gt))
			faces = append(faces, f)
		}
	}
	t.Logf("tiny (416) detection by style: %v", detT)
	t.Logf("SSD detection by style: %v", detS)
	report := func(name string, get func(face) []float32) {
		var intra, inter, intraD, interD []float64
		correct, n := 0, 0
		for a := range faces {
			va := get(faces[a])
			if va == nil {
				continue
			}
			best, bestCos := -1, -2.0
			for b := range faces {
				vb := get(faces[b])
				if a == b || vb == nil {
					continue
				}
				c := cosine(va, vb)
				d := faceapi.Distance(va, vb)
				if faces[a].id == faces[b].id {
					intra, intraD = append(intra, c), append(intraD, d)
				} else {
					inter, interD = append(inter, c), append(interD, d)
				}
				if c > bestCos {
					best, bestCos = b, c
				}
			}
			if best >= 0 {
				n++
				if faces[best].id == faces[a].id {
					correct++
				}
			}
		}
		t.Logf("%s: %d faces; cosine intra %.3f inter %.3f; distance intra %.3f inter %.3f (share of inter pairs under 0.6: %.2f); 1-NN identification %d/%d = %.2f (chance %.2f)",
			name, n, mean(intra), mean(inter), mean(intraD), mean(interD), below(interD, 0.6), correct, n, float64(correct)/math.Max(1, float64(n)), float64(per-1)/float64(ids*per-1))
	}
	report("detected crops", func(f face) []float32 { return f.desc })
	report("ground-truth crops", func(f face) []float32 { return f.gt })
	for _, st := range Styles {
		st := st
		report("ground-truth crops, "+st+" only", func(f face) []float32 {
			if f.style != st {
				return nil
			}
			return f.gt
		})
	}
	// attribute embedding for comparison (one vector per identity)
	var ac []float64
	for i := 0; i < ids; i++ {
		for k := i + 1; k < ids; k++ {
			ac = append(ac, cosine(AttrEmbedding(NewIdentity(1, HeldOutBase+i)).Vector, AttrEmbedding(NewIdentity(1, HeldOutBase+k)).Vector))
		}
	}
	t.Logf("%s: intra cosine 1 by construction, inter %.3f (max %.3f)", EmbeddingSpace, mean(ac), maxf(ac))

	// detection rate against image size (photo and cartoon styles, 16 images per size)
	var lines []string
	for _, size := range []int{32, 48, 64, 96, 128, 192, 256} {
		nt, ns, n := 0, 0, 0
		for i := 0; i < 16; i++ {
			s := RenderSample(1, HeldOutBase+100+i, 0, RenderOptions{Size: size})
			td, _ := tiny.Detect(s.Pixels, faceapi.TinyOptions{InputSize: 416})
			sd, _ := ssd.Detect(s.Pixels, faceapi.SSDOptions{})
			if _, ok := hit(td, s.FaceBox); ok {
				nt++
			}
			if _, ok := hit(sd, s.FaceBox); ok {
				ns++
			}
			n++
		}
		lines = append(lines, fmt.Sprintf("%dpx tiny %d/%d ssd %d/%d", size, nt, n, ns, n))
	}
	t.Logf("detection vs size (all styles): %s", strings.Join(lines, "; "))
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / math.Max(1, float64(len(v)))
}

func maxf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

func below(v []float64, th float64) float64 {
	sort.Float64s(v)
	n := sort.SearchFloat64s(v, th)
	return float64(n) / math.Max(1, float64(len(v)))
}
