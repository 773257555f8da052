// Package nn holds the float32 CPU building blocks that the project's pure-Go
// network ports share: convolution (im2col + a register-blocked matrix
// multiply spread over all cores), PReLU, max pooling, softmax, dense layers
// and PyTorch's "area" (adaptive average) resize.
//
// Tensors are dense, row-major, and image tensors are NCHW, as in PyTorch, so
// weights exported from PyTorch can be used without any reordering and every
// op can be checked against a PyTorch reference number for number.
//
// Shape mismatches inside a forward pass are programming errors and panic with
// a message naming the layer and the shapes; constructors, which see weights
// from files, return errors instead.
package nn

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Tensor is a dense float32 array in row-major order.
type Tensor struct {
	Shape []int
	Data  []float32
}

// New returns a zeroed tensor of the given shape.
func New(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, numel(shape))}
}

// FromData wraps data (not copied) as a tensor of the given shape.
func FromData(data []float32, shape ...int) (*Tensor, error) {
	if n := numel(shape); n != len(data) {
		return nil, fmt.Errorf("nn: shape %v holds %d values but data has %d", shape, n, len(data))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}, nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// dims4 returns the N, C, H, W of a 4-D tensor and panics otherwise; op is
// named in the message so a wrong call site is easy to find.
func (t *Tensor) dims4(op string) (n, c, h, w int) {
	if len(t.Shape) != 4 {
		panic(fmt.Sprintf("nn.%s: want an NCHW tensor, got shape %v", op, t.Shape))
	}
	return t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
}

// ParallelFor runs fn(worker, task) for every task in [0, tasks) on up to
// Workers() goroutines and returns when all are done; see parallel.
func ParallelFor(tasks int, fn func(worker, task int)) { parallel(tasks, fn) }

// parallel runs fn(worker, task) for task in [0, tasks) on up to GOMAXPROCS
// goroutines. Tasks are handed out one at a time from an atomic counter, so
// uneven tasks (image tiles at a border, crops of different sizes) still keep
// every core busy; worker (0 ≤ worker < workers) indexes per-goroutine
// scratch space.
func parallel(tasks int, fn func(worker, task int)) {
	workers := min(runtime.GOMAXPROCS(0), tasks)
	if workers <= 1 {
		for t := range tasks {
			fn(0, t)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t := int(next.Add(1)) - 1
				if t >= tasks {
					return
				}
				fn(w, t)
			}
		}()
	}
	wg.Wait()
}

// Workers is the number of goroutines parallel ops use, for callers sizing
// per-worker scratch.
func Workers() int { return runtime.GOMAXPROCS(0) }
