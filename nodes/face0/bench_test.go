package face0

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

// The bars: the sampler node against a bare loop of the same onnxruntime
// UNet calls (the overhead of everything else: guidance, scheduler,
// progress and previews, value conversion), and one batched 4-branch call
// against four sequential calls. Both sides run interleaved in the same
// benchmark so that the ratio does not depend on the machine's load at
// different times. Run with
//
//	go test ./nodes/face0 -run '^$' -bench . -benchtime 20x
//
// Models: "tiny" is sdmodel.TinyConfig (UNet width 32); "small" has width 64
// and 64x64 images, where a UNet call costs a few milliseconds as on a
// slow real model, and the fixed costs per step matter less.
var benchModels = []struct {
	name string
	cfg  func() sdmodel.Config
	size int
}{
	{"tiny-32px", sdmodel.TinyConfig, 32},
	{"small-64px", func() sdmodel.Config {
		c := sdmodel.TinyConfig()
		c.UNetChannels, c.UNetGroups, c.SampleSize = 64, 16, 64
		return c
	}, 64},
}

// benchRig runs the pack's nodes in process, through the same Execute path
// the plugin server uses.
type benchRig struct {
	nodes   map[string]sdk.Node
	dirs    *pb.Dirs
	lastLog string
}

func newBenchRig(b *testing.B, cfg sdmodel.Config) *benchRig {
	needORT(b)
	root := b.TempDir()
	if err := sdmodel.Generate(filepath.Join(root, "m"), cfg); err != nil {
		b.Fatal(err)
	}
	r := &benchRig{nodes: map[string]sdk.Node{}, dirs: &pb.Dirs{Models: root, Temp: root, Output: root, Input: root}}
	for _, n := range Pack("bench").Nodes {
		r.nodes[n.Spec().Type] = n
	}
	return r
}

func (r *benchRig) exec(b testing.TB, node string, in map[string]any) *pb.Outputs {
	vals := map[string]*pb.Value{}
	for k, v := range in {
		if pv, ok := v.(*pb.Value); ok {
			vals[k] = pv
			continue
		}
		pv, err := value.FromJSON(v)
		if err != nil {
			b.Fatal(err)
		}
		vals[k] = pv
	}
	ctx := sdk.NewContext(context.Background(), node, func(e *pb.ExecuteEvent) error {
		if l := e.GetLog(); l != nil {
			r.lastLog = l.Message
		}
		return nil
	})
	ctx.Dirs = r.dirs
	out, err := r.nodes[node].Execute(ctx, vals)
	if err != nil {
		b.Fatalf("%s: %v", node, err)
	}
	return out
}

func BenchmarkSamplerOverhead(b *testing.B) {
	for _, bm := range benchModels {
		for _, branches := range []struct {
			name string
			c, a float64
		}{{"2-branch", 1, 0}, {"4-branch", 0.5, 0.5}} {
			b.Run(bm.name+"/"+branches.name, func(b *testing.B) {
				r := newBenchRig(b, bm.cfg())
				cond := r.exec(b, "EncodeText", map[string]any{"model": "m", "text": "a photo of a person"}).Values["CONDITIONING"]
				face := r.exec(b, "RandomEmbedding", map[string]any{"model": "m", "seed": 1}).Values["embedding"]
				const steps = 20
				in := map[string]any{"model": "m", "positive": cond, "face_embedding": face, "seed": 1, "steps": steps,
					"c": branches.c, "a": branches.a, "width": bm.size, "height": bm.size}
				bare := bareLoop(b, r, cond, face, steps, branches.c, branches.a, bm.size)
				r.exec(b, "Face0Sampler", in) // warm: sessions loaded, arenas sized
				bare()
				var tNode, tBare, tInside time.Duration
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					r.exec(b, "Face0Sampler", in)
					t1 := time.Now()
					bare()
					tNode += t1.Sub(t0)
					tBare += time.Since(t1)
					tInside += unetTimeOf(b, r.lastLog)
				}
				b.ReportMetric(float64(tInside.Microseconds())/float64(b.N)/1000, "unet-in-node-ms/op")
				b.ReportMetric(float64(tNode.Microseconds())/float64(b.N)/1000, "node-ms/op")
				b.ReportMetric(float64(tBare.Microseconds())/float64(b.N)/1000, "bare-ms/op")
				b.ReportMetric(100*(float64(tNode)/float64(tBare)-1), "overhead-%")
			})
		}
	}
}

// bareLoop returns a function making exactly the UNet calls the sampler
// makes: the same batch, contexts, timesteps and latents (replayed from a
// real run's trajectory, since the values may matter to the cost), prepared
// up front, with nothing else in between. That is the floor the sampler's
// wall time is measured against.
func bareLoop(b *testing.B, r *benchRig, cond, face *pb.Value, steps int, c, a float64, size int) func() {
	m, err := getModel(r.dirs, "m")
	if err != nil {
		b.Fatal(err)
	}
	pd, ps, _ := value.AsFloat32(cond)
	fd, _, _ := value.AsFloat32(face)
	in := samplerIn{Model: "m", Positive: sdk.Tensor{Data: pd, Shape: ps}, Face: &sdk.Embedding{Vector: fd},
		Seed: 1, Steps: steps, Width: size, Height: size, BatchSize: 1, Scheduler: "ddim", W: 7.5, C: c, A: a}
	ctx := sdk.NewContext(context.Background(), "bare", nil)
	ctx.Dirs = r.dirs
	j, release, err := m.newJob(ctx, in)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(release)
	// Record the latent entering each step.
	per := j.channels * j.h * j.w
	first := make([]float32, j.batch*per)
	if err := f0.BatchLatentNoise(first, j.batch, j.seed); err != nil {
		b.Fatal(err)
	}
	for i := range first {
		first[i] *= float32(j.sched.InitNoiseSigma())
	}
	lat := [][]float32{first}
	j.onStep = func(_ int, x []float32) { lat = append(lat, slices.Clone(x)) }
	if _, _, err := j.run(ctx); err != nil {
		b.Fatal(err)
	}
	rows := int64(j.plan.Len() * j.batch)
	ts, _ := j.unet.Info().Input(sdmodel.InTimestep)
	inputs := make([]map[string]ort.Tensor, steps)
	for i, t := range j.sched.Timesteps() {
		inputs[i] = map[string]ort.Tensor{
			sdmodel.InSample:   ort.F32(j.plan.Replicate(nil, lat[i], float32(j.sched.InputScale(i))), rows, int64(j.channels), int64(j.h), int64(j.w)),
			sdmodel.InTimestep: timestepTensor(ts, t, rows),
			sdmodel.InContext:  ort.F32(j.contexts, rows, int64(j.tokens), int64(j.dim)),
		}
	}
	cctx, cancel := context.WithCancel(context.Background()) // cancellable, as the node's
	b.Cleanup(cancel)
	return func() {
		for _, in := range inputs {
			if _, err := j.unet.RunContext(cctx, in); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkBatchedVsSequential: one UNet call on the four Face0 branches
// stacked in the batch against four calls of batch one.
func BenchmarkBatchedVsSequential(b *testing.B) {
	for _, bm := range benchModels {
		b.Run(bm.name, func(b *testing.B) {
			r := newBenchRig(b, bm.cfg())
			m, err := getModel(r.dirs, "m")
			if err != nil {
				b.Fatal(err)
			}
			unet, release, err := m.session(sdmodel.UNetFile, "cpu")
			if err != nil {
				b.Fatal(err)
			}
			defer release()
			man := m.Manifest
			h := int64(bm.size / man.VAEScaleFactor)
			ts, _ := unet.Info().Input(sdmodel.InTimestep)
			mk := func(rows int64) map[string]ort.Tensor {
				return map[string]ort.Tensor{
					sdmodel.InSample:   ort.F32(make([]float32, rows*4*h*h), rows, 4, h, h),
					sdmodel.InTimestep: timestepTensor(ts, 500, rows),
					sdmodel.InContext:  ort.F32(make([]float32, rows*int64(man.ContextLength*man.TextWidth)), rows, int64(man.ContextLength), int64(man.TextWidth)),
				}
			}
			four, one := mk(4), mk(1)
			run := func(in map[string]ort.Tensor) {
				if _, err := unet.Run(in); err != nil {
					b.Fatal(err)
				}
			}
			run(four)
			run(one)
			var tBatched, tSeq time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				run(four)
				t1 := time.Now()
				for range 4 {
					run(one)
				}
				tBatched += t1.Sub(t0)
				tSeq += time.Since(t1)
			}
			b.ReportMetric(float64(tBatched.Microseconds())/float64(b.N)/1000, "batched-ms/op")
			b.ReportMetric(float64(tSeq.Microseconds())/float64(b.N)/1000, "sequential-ms/op")
			b.ReportMetric(float64(tSeq)/float64(tBatched), "speedup-x")
		})
	}
}

// unetTimeOf reads the time spent inside UNet calls from the sampler's log line.
func unetTimeOf(b testing.TB, line string) time.Duration {
	m := logRE.FindStringSubmatch(line)
	if m == nil {
		b.Fatalf("no sampler log line in %q", line)
	}
	d, err := time.ParseDuration(m[4])
	if err != nil {
		b.Fatal(err)
	}
	return d
}
