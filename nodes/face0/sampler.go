package face0

import (
	"context"
	"fmt"
	"image"
	"sync/atomic"
	"time"

	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sched"
	"github.com/face0/face0/ml/sdmodel"
)

// job is one sampling run, independent of the plugin SDK so that the
// benchmark can time the loop itself against bare UNet calls.
type job struct {
	unet     *ort.Session
	plan     f0.Plan
	contexts []float32 // [plan.Len()·batch, tokens, dim], built once
	tokens   int
	dim      int

	sched    sched.Scheduler
	batch    int
	channels int
	h, w     int // latent size
	seed     uint64
	// latentScale undoes the manifest's latent scale in previews of latents
	// that are images in disguise (space-to-depth), not SD's 4-channel VAE.
	latentScale float32

	// onStep is called after each step with the current latent (read only);
	// preview says whether this step should also produce a preview image.
	onStep  func(i int, x []float32)
	preview func(i int) bool
	onImage func(img *image.NRGBA)
}

// runStats tells what the loop did: tests read it from the sampler's debug
// log line to check which branches ran, without timing anything.
type runStats struct {
	Calls    int
	Batch    int // rows per UNet call: branches × samples
	Branches []f0.Branch
	UNet     time.Duration // wall time inside the UNet calls
}

// unetCalls counts UNet calls in this process, for tests and debugging.
var unetCalls atomic.Int64

// run denoises from seeded noise and returns the final latent
// [batch, channels, h, w] (still scaled by the VAE's latent scale).
func (j *job) run(ctx context.Context) ([]float32, runStats, error) {
	per := j.channels * j.h * j.w
	x := make([]float32, j.batch*per)
	if err := f0.BatchLatentNoise(x, j.batch, j.seed); err != nil {
		return nil, runStats{}, err
	}
	sigma := float32(j.sched.InitNoiseSigma())
	for i := range x {
		x[i] *= sigma
	}
	var noise sched.NoiseFunc
	if j.sched.NeedsNoise() {
		noise = f0.NewStepNoise(j.batch, j.seed).Fill
	}

	k := j.plan.Len()
	rows := int64(k * j.batch)
	stats := runStats{Batch: int(rows), Branches: j.plan.Branches}
	sampleShape := []int64{rows, int64(j.channels), int64(j.h), int64(j.w)}
	ctxT := ort.F32(j.contexts, rows, int64(j.tokens), int64(j.dim))
	tsInfo, _ := j.unet.Info().Input(sdmodel.InTimestep)

	var in []float32
	eps := make([]float32, len(x))
	var x0 []float32
	for i, t := range j.sched.Timesteps() {
		// Cancellation is checked between steps here and inside a step by
		// onnxruntime (RunContext terminates the running call).
		if err := ctx.Err(); err != nil {
			return nil, stats, err
		}
		in = j.plan.Replicate(in, x, float32(j.sched.InputScale(i)))
		t0 := time.Now()
		out, err := j.unet.RunContext(ctx, map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(in, sampleShape...),
			sdmodel.InTimestep: timestepTensor(tsInfo, t, rows),
			sdmodel.InContext:  ctxT,
		})
		if err != nil {
			return nil, stats, err
		}
		stats.UNet += time.Since(t0)
		stats.Calls++
		unetCalls.Add(1)
		o, ok := out[sdmodel.OutNoise]
		if !ok {
			return nil, stats, fmt.Errorf("%s gave no %q output", j.unet.Path(), sdmodel.OutNoise)
		}
		if err := j.plan.Combine(eps, o.Float32()); err != nil {
			return nil, stats, fmt.Errorf("%s: %w", j.unet.Path(), err)
		}
		if j.preview != nil && j.preview(i) && j.onImage != nil {
			if x0 == nil {
				x0 = make([]float32, len(x))
			}
			// The prediction of x_0 previews the final image far better
			// than the noisy latent itself.
			if err := j.sched.Denoised(x0, eps, x, i); err == nil {
				j.onImage(latentPreview(x0, 0, j.channels, j.h, j.w, previewScale(j.h, j.w), j.latentScale))
			}
		}
		if err := j.sched.Step(i, eps, x, noise); err != nil {
			return nil, stats, err
		}
		if j.onStep != nil {
			j.onStep(i, x)
		}
	}
	return x, stats, nil
}

// previewScale enlarges tiny latents so the preview is visible, up to about
// 256 pixels, and never enlarges big ones (a larger PNG would cost more to
// encode than the step it shows).
func previewScale(h, w int) int {
	s := 256 / max(h, w, 1)
	return min(max(s, 1), 8)
}

// timestepTensor builds the UNet's timestep input in the type and shape the
// model declares: diffusers' SD exports use float32 [batch], older ones int64
// [1] or a scalar.
func timestepTensor(ti onnx.TensorInfo, t float64, rows int64) ort.Tensor {
	n := rows
	switch {
	case ti.Rank() == 0:
		n = 0
	case ti.Rank() == 1 && ti.Dims[0].Size == 1:
		n = 1
	}
	var shape []int64
	count := int64(1)
	if n > 0 {
		shape, count = []int64{n}, n
	}
	switch ti.DType {
	case onnx.Int64:
		d := make([]int64, count)
		for i := range d {
			d[i] = int64(t)
		}
		return ort.I64(d, shape...)
	case onnx.Int32:
		d := make([]int32, count)
		for i := range d {
			d[i] = int32(t)
		}
		return ort.I32(d, shape...)
	}
	d := make([]float32, count)
	for i := range d {
		d[i] = float32(t)
	}
	return ort.F32(d, shape...)
}

// previewEvery decides which steps show a preview: about eight over a run,
// at least minGap apart and not before minGap into the run, and never the
// last step, whose result the node outputs anyway. A run shorter than minGap
// shows none: nobody sees a 10 ms preview, and each costs a PNG encode whose
// compressor alone allocates about a megabyte.
func previewEvery(steps int, minGap time.Duration) func(i int) bool {
	every := max(1, steps/8)
	last := time.Now()
	return func(i int) bool {
		if (i+1)%every != 0 || i+1 >= steps {
			return false
		}
		now := time.Now()
		if now.Sub(last) < minGap {
			return false
		}
		last = now
		return true
	}
}
