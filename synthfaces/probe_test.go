package synthfaces

import (
	"math"
	"os"
	"testing"
	"time"
)

// TestProbesOnHeldOutRenders checks the probes on renders of identities and
// a seed the probe never trained on, at the dataset's 128 px (resized to 32
// by Measure) and at 32 px directly.
func TestProbesOnHeldOutRenders(t *testing.T) {
	t0 := time.Now()
	defaultProbe()
	t.Logf("probe training: %v", time.Since(t0).Round(time.Millisecond))
	for _, size := range []int{128, 32} {
		var bg, hat, gl, hatType, glType, n int
		perStyle := map[string][2]int{}
		for id := 0; id < 150; id++ {
			s := RenderSample(12345, HeldOutBase+id, id%4, RenderOptions{Size: size})
			p, _ := Measure(s.Pixels)
			n++
			ok := 0
			if p.Background == s.Scene.Background {
				bg++
			}
			if p.HasHat() == (s.Scene.Hat != "none") {
				hat++
				ok++
			}
			if p.HasGlasses() == (s.Scene.Glasses != "none") {
				gl++
				ok++
			}
			if p.Hat == s.Scene.Hat {
				hatType++
			}
			if p.Glasses == s.Scene.Glasses {
				glType++
			}
			ps := perStyle[s.Scene.Style]
			perStyle[s.Scene.Style] = [2]int{ps[0] + ok, ps[1] + 2}
		}
		f := func(k int) float64 { return float64(k) / float64(n) }
		t.Logf("%d px, %d held-out renders: background %.3f, hat present %.3f (type %.3f), glasses present %.3f (type %.3f); hat+glasses by style %v",
			size, n, f(bg), f(hat), f(hatType), f(gl), f(glType), perStyle)
		if f(bg) < 0.97 || f(hat) < 0.92 || f(gl) < 0.9 {
			t.Errorf("%d px: probe accuracy too low", size)
		}
	}
}

// TestTrainProbe retrains the shipped probe weights (probe.bin) when
// SYNTHFACES_TRAIN_PROBE=1; run it after any change that alters renders
// (and bump Version). It takes a few minutes on two cores.
func TestTrainProbe(t *testing.T) {
	if os.Getenv("SYNTHFACES_TRAIN_PROBE") == "" {
		t.Skip("set SYNTHFACES_TRAIN_PROBE=1 to retrain probe.bin")
	}
	t0 := time.Now()
	m := trainProbe(probeTrainSeed, probeTrainN, probeTrainEpochs)
	b := encodeProbe(m)
	if err := os.WriteFile("probe.bin", b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("trained in %v, wrote probe.bin (%d bytes)", time.Since(t0).Round(time.Second), len(b))
}

func TestProbeWeightsRoundTrip(t *testing.T) {
	m := trainProbe(7, 40, 1)
	d, err := decodeProbe(encodeProbe(m))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.w1 {
		if math.Abs(float64(m.w1[i]-d.w1[i])) > 0.01*math.Abs(float64(m.w1[i]))+1e-3 {
			t.Fatalf("w1[%d] %v vs %v", i, m.w1[i], d.w1[i])
		}
	}
	if _, err := decodeProbe(probeBin); err != nil {
		t.Errorf("shipped probe.bin: %v (retrain with SYNTHFACES_TRAIN_PROBE=1)", err)
	}
}
