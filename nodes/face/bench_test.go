package face

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/internal/testenv"
)

func median(ds []float64) float64 {
	s := append([]float64(nil), ds...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkDetectEmbed times DetectFace (detection plus the Face0 crops of
// every face) and EmbedFace (faceapi-128, flip-averaged, on the chosen
// face) on a 1920x1280 demo photo, per backend, reporting the median
// milliseconds per photo. The JavaScript reference (face-api on TF.js wasm)
// runs on the same photo in the same benchmark run as the baseline, when
// scripts/faceapi-reference/node_modules is installed; the ratio metric is
// reference time over Go time for the same detector. Run with
//
//	go test ./nodes/face -run '^$' -bench DetectEmbed -benchtime 5x
func BenchmarkDetectEmbed(b *testing.B) {
	const photo = "sample1.jpg"
	img := demoPhoto(b, photo)
	goMedian := map[string]float64{}
	for _, backend := range allBackends {
		b.Run(backend, func(b *testing.B) {
			in := detectInput(b, img, backend)
			ctx := testCtx()
			// Load the models outside the timing: the plugin keeps them warm.
			if _, err := detectFace(ctx, in); err != nil {
				b.Fatal(err)
			}
			var ms []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				out, err := detectFace(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				f, err := ParseFace(out.Face)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := embed(context.Background(), testDirs, ModelFaceAPI, "", f.Crop); err != nil {
					b.Fatal(err)
				}
				ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			}
			goMedian[backend] = median(ms)
			b.ReportMetric(median(ms), "ms/median")
		})
	}
	var (
		jsOnce sync.Once
		jsRes  map[string]any
		jsErr  error
	)
	b.Run("faceapi-js", func(b *testing.B) {
		root, err := assets.ModuleRoot()
		if err != nil {
			b.Fatal(err)
		}
		modules := filepath.Join(root, "scripts", "faceapi-reference", "node_modules")
		if _, err := os.Stat(filepath.Join(modules, "@tensorflow", "tfjs-backend-wasm")); err != nil {
			b.Skipf("skipping the JavaScript baseline: %s is not installed (cd scripts/faceapi-reference && npm ci)", modules)
		}
		node, err := exec.LookPath("node")
		if err != nil {
			b.Skip("skipping the JavaScript baseline: node is not on PATH")
		}
		faceapiDir := testenv.FaceAPI(b)
		script, _ := filepath.Abs(filepath.Join("testdata", "reference-bench.js"))
		// The script loops by itself (one process start, warm-up excluded),
		// so it runs once per benchmark run, whatever b.N the framework asks
		// for; ns/op of this sub-benchmark is meaningless.
		jsOnce.Do(func() {
			cmd := exec.Command(node, script, faceapiDir, filepath.Join(faceapiDir, "demo", photo), "5")
			cmd.Dir = filepath.Join(root, "scripts", "faceapi-reference")
			cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
			cmd.Stderr = os.Stderr
			outb, err := cmd.Output()
			if err != nil {
				jsErr = fmt.Errorf("reference-bench.js: %v", err)
				return
			}
			if err := json.Unmarshal(outb, &jsRes); err != nil {
				jsErr = fmt.Errorf("reference-bench.js output %q: %v", outb, err)
			}
		})
		if jsErr != nil {
			b.Fatal(jsErr)
		}
		res := jsRes
		for _, backend := range []string{BackendSSD, BackendTiny} {
			raw, _ := res[backend].([]any)
			var ms []float64
			for _, v := range raw {
				if f, ok := v.(float64); ok {
					ms = append(ms, f)
				}
			}
			m := median(ms)
			b.ReportMetric(m, backend+"-ms/median")
			if g := goMedian[backend]; g > 0 {
				b.ReportMetric(m/g, backend+"-js/go")
			}
		}
		if l, ok := res["load_ms"].(float64); ok {
			b.ReportMetric(l, "load-ms")
		}
	})
}
