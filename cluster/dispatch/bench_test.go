package dispatch_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// median of durations, in milliseconds.
func medianMS(ds []time.Duration) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

func timeRun(b *testing.B, e *engine.Engine, cat *engine.Catalog, src string, outputs ...string) time.Duration {
	b.Helper()
	w, _, err := workflow.Parse([]byte(src))
	if err != nil {
		b.Fatal(err)
	}
	plan, err := cat.Compile(w, outputs)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := e.Run(context.Background(), plan, engine.RunOptions{UIOnly: true}); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkOverhead measures, in the same run, a trivial node and a 16 MiB
// tensor hop (MakeTensor → TensorLen) on the server's own plugins against
// the same through a worker (NATS on loopback, an in-process worker with a
// plugin process of its own). Through the worker, the tensor is put in the
// object store by the worker and fetched by the server (which needs every
// result, for the cache and the nodes it runs itself); TensorLen's input is
// at hand on the worker. Each iteration makes a tensor of new content, so
// the object store never has it already. Medians, in ms:
//
//	go test -run - -bench Overhead -benchtime 20x ./cluster/dispatch/
func BenchmarkOverhead(b *testing.B) {
	r := newRig(b, rigOptions{})
	r.addWorker("w1", 1)
	local := engine.New(r.local)
	var lt, rt, lh, rh []time.Duration
	b.ResetTimer()
	for i := range b.N {
		trivial := fmt.Sprintf(`{"version":1,"nodes":[{"id":"a","type":"Add","inputs":{"a":%d,"b":1}}]}`, i)
		hop := fmt.Sprintf(`{"version":1,"nodes":[{"id":"mk","type":"MakeTensor","inputs":{"mb":16,"fill":%d}},
			{"id":"len","type":"TensorLen","inputs":{"latent":{"node":"mk","output":"LATENT"}}}]}`, i+2)
		lt = append(lt, timeRun(b, local, r.catalog, trivial, "a"))
		rt = append(rt, timeRun(b, r.engine, r.catalog, trivial, "a"))
		lh = append(lh, timeRun(b, local, r.catalog, hop, "len"))
		rh = append(rh, timeRun(b, r.engine, r.catalog, hop, "len"))
	}
	b.StopTimer()
	b.ReportMetric(medianMS(lt), "local-trivial-ms")
	b.ReportMetric(medianMS(rt), "remote-trivial-ms")
	b.ReportMetric(medianMS(rt)/medianMS(lt), "trivial-remote/local")
	b.ReportMetric(medianMS(lh), "local-16MiB-ms")
	b.ReportMetric(medianMS(rh), "remote-16MiB-ms")
	b.ReportMetric(medianMS(rh)/medianMS(lh), "16MiB-remote/local")
}

// BenchmarkThroughput runs a queue of prompts, each one node that sleeps
// 200 ms (a stand-in for a CPU-bound node on this 2-core machine: sleeping
// shows the scheduling without the workers competing for the same cores),
// first with one worker, then with three, in the same run, and reports how
// much faster three are:
//
//	go test -run - -bench Throughput -benchtime 1x ./cluster/dispatch/
func BenchmarkThroughput(b *testing.B) {
	const prompts = 12
	r := newRig(b, rigOptions{})
	queue := func(round int) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for i := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				timeRun(b, r.engine, r.catalog, fmt.Sprintf(`{"version":1,"nodes":[{"id":"s","type":"Sleep","inputs":{"ms":200,"steps":2,"value":%d}}]}`, round*1000+i), "s")
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	var one, three []time.Duration
	b.ResetTimer()
	for i := range b.N {
		r.addWorker(fmt.Sprintf("solo%d", i), 1)
		one = append(one, queue(2*i))
		r.addWorker(fmt.Sprintf("second%d", i), 1)
		r.addWorker(fmt.Sprintf("third%d", i), 1)
		three = append(three, queue(2*i+1))
		for name, w := range r.workers {
			w.stop()
			r.mu.Lock()
			delete(r.workers, name)
			r.mu.Unlock()
		}
		r.waitFor(func() bool { return len(r.runner.Workers()) == 0 }, "the workers to leave")
	}
	b.StopTimer()
	b.ReportMetric(medianMS(one), "1-worker-ms")
	b.ReportMetric(medianMS(three), "3-workers-ms")
	b.ReportMetric(medianMS(one)/medianMS(three), "speed-up")
}
