package engine_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkTrivialNode: scheduling plus the plugin round trip of one trivial
// node, uncached. Goal: median at most 0.5 ms.
func BenchmarkTrivialNode(b *testing.B) {
	r := newRig(b, "")
	plan, err := r.catalog.Compile(parse(b, `{"version":1,"nodes":[{"id":"a","type":"Add","inputs":{"a":1,"b":2}}]}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r.engine.Run(ctx, plan, engine.RunOptions{}) // warm the connection
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := r.engine.Run(ctx, plan, engine.RunOptions{}); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(float64(median(times).Microseconds())/1000, "ms-median")
}

// BenchmarkCachedChain100: a 100-node chain whose results are all cached,
// validated and re-run. Goal: at most 20 ms.
func BenchmarkCachedChain100(b *testing.B) {
	r := newRig(b, b.TempDir())
	w := parse(b, chain(100))
	ctx := context.Background()
	plan, err := r.catalog.Compile(w, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.engine.Run(ctx, plan, engine.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		plan, err := r.catalog.Compile(w, nil)
		if err != nil {
			b.Fatal(err)
		}
		res, err := r.engine.Run(ctx, plan, engine.RunOptions{})
		if err != nil || len(res.Executed) != 0 {
			b.Fatalf("executed %v, err %v", res.Executed, err)
		}
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(float64(median(times).Microseconds())/1000, "ms-median")
}

// BenchmarkFirstRunChain100: a 100-node chain run for the first time, once
// with the cache (every key is new, so every node executes and its result is
// Put) and once with NoCache, alternating in the same loop so both see the
// same machine. The cache must stay off the critical path. Goal:
// x-cache-vs-nocache at most 1.2. x-with-flush adds the time to make the
// run's entries durable afterwards (what Close costs a one-shot CLI run).
func BenchmarkFirstRunChain100(b *testing.B) {
	r := newRig(b, b.TempDir())
	ctx := context.Background()
	seed := 0
	run := func(noCache bool) time.Duration {
		seed++ // a new first literal gives the whole chain new keys
		plan, err := r.catalog.Compile(parse(b, chainFrom(100, seed)), nil)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		res, err := r.engine.Run(ctx, plan, engine.RunOptions{NoCache: noCache})
		d := time.Since(t0)
		if err != nil || len(res.Executed) != 100 {
			b.Fatalf("executed %d nodes, err %v; want all 100", len(res.Executed), err)
		}
		return d
	}
	flush := func() time.Duration {
		t0 := time.Now()
		if err := r.cache.Flush(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	run(false) // warm the connection and the index
	run(true)
	flush()
	var cached, flushed, plain []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := run(false)
		f := flush()
		cached, flushed = append(cached, c), append(flushed, c+f)
		plain = append(plain, run(true))
	}
	mc, mf, mp := median(cached), median(flushed), median(plain)
	b.ReportMetric(float64(mc.Microseconds())/1000, "ms-cache")
	b.ReportMetric(float64(mp.Microseconds())/1000, "ms-nocache")
	b.ReportMetric(float64(mc)/float64(mp), "x-cache-vs-nocache")
	b.ReportMetric(float64(mf)/float64(mp), "x-with-flush")
}

// chainFrom is chain(n) whose first node's literal is start.
func chainFrom(n, start int) string {
	return strings.Replace(chain(n), `"value":1}`, fmt.Sprintf(`"value":%d}`, start), 1)
}

// BenchmarkTensorTransfer16MB: a 16 MB tensor from host to plugin (the node
// reports the byte count it received, so the plugin must receive all of it). Reported as throughput and as
// a ratio against a plain in-memory copy of 16 MB measured in the same run.
func BenchmarkTensorTransfer16MB(b *testing.B) {
	r := newRig(b, "")
	const size = 16 << 20
	data := make([]float32, size/4)
	for i := range data {
		data[i] = 1
	}
	in := value.Float32Tensor("LATENT", data, 1, int64(len(data)))
	req := &pb.ExecuteRequest{NodeType: "TensorLen", Inputs: map[string]*pb.Value{"latent": in}}
	ctx := context.Background()
	noop := func(*pb.ExecuteEvent) {}
	if _, err := r.mgr.Execute(ctx, req, noop); err != nil {
		b.Fatal(err)
	}
	src, dst := in.GetTensor().Data, make([]byte, size)
	copyTime := func() time.Duration {
		t0 := time.Now()
		copy(dst, src)
		return time.Since(t0)
	}
	var copies, sends []time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		out, err := r.mgr.Execute(ctx, req, noop)
		if err != nil || out.Values["INT"].GetInt() != size {
			b.Fatalf("%v %v", out, err)
		}
		sends = append(sends, time.Since(t0))
		copies = append(copies, copyTime())
	}
	send, cp := median(sends), median(copies)
	b.ReportMetric(float64(size)/send.Seconds()/1e9, "GB/s-transfer")
	b.ReportMetric(float64(size)/cp.Seconds()/1e9, "GB/s-memcopy")
	b.ReportMetric(float64(send)/float64(cp), "x-slower-than-copy")
}
