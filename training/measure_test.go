package training

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/training/model"
)

// TestMeasureStep times training steps on the current backend and reports
// the process's peak RSS. It runs only when FACE0_MEASURE is set to
// "width,blocks,batch[,steps[,latent]]" (one config per process, so the
// peak is that config's), e.g.
//
//	FACE0_MEASURE=128,4,16 GOMLX_BACKEND=go go test ./training -run TestMeasureStep -v
func TestMeasureStep(t *testing.T) {
	spec := os.Getenv("FACE0_MEASURE")
	if spec == "" {
		t.Skip("set FACE0_MEASURE=width,blocks,batch[,steps[,latent]] to measure")
	}
	var width, blocks, batch int
	steps, latent := 6, 8
	if n, _ := fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%d %d %d %d %d", &width, &blocks, &batch, &steps, &latent); n < 3 {
		t.Fatalf("FACE0_MEASURE=%q: want width,blocks,batch[,steps[,latent]]", spec)
	}
	cfg := DefaultConfig()
	cfg.Model.LatentSize = latent
	cfg.Model.Width = width
	cfg.Model.Blocks = blocks
	cfg.Model.Heads = max(1, width/32)
	cfg.Model.TimeFreqDim = width
	cfg.Model.TimeDim = width
	cfg.Model.TextWidth = 32
	cfg.BatchSize = batch
	cfg.CheckpointEvery = 0
	data := NewSynthetic(cfg.Model, 256, 1)
	tr, err := New(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := tr.Step(); err != nil { // compiles the graph
		t.Fatal(err)
	}
	first := time.Since(start)
	var times []float64
	for range steps {
		s := time.Now()
		if err := tr.Run(context.Background(), tr.State().Step+1, nil); err != nil {
			t.Fatal(err)
		}
		times = append(times, time.Since(s).Seconds())
	}
	sort.Float64s(times)
	med := times[len(times)/2]
	flops := cfg.Model.StepFLOPs(batch, 1, false)
	t.Logf("backend %s; width %d, blocks %d, heads %d, latent %dx%dx%d (%d tokens), context 77x%d, batch %d: %d weights",
		tr.Backend(), width, blocks, cfg.Model.Heads, cfg.Model.LatentSize, cfg.Model.LatentSize, cfg.Model.LatentChannels,
		cfg.Model.Tokens(), cfg.Model.TextWidth, batch, model.ParamCount(cfg.Model.Specs()))
	t.Logf("first step (with compile) %.2fs; median of %d steps %.3f s/step; %.2f GFLOP/step, %.2f GFLOP/s; peak RSS %s",
		first.Seconds(), steps, med, float64(flops)/1e9, float64(flops)/1e9/med, peakRSS())
}

func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}
