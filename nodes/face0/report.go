package face0

import (
	"image"
	"sync"
	"time"

	"github.com/face0/face0/plugins/sdk"
)

// reportEvery is how often the reporter wakes to send what the loop
// recorded.
const reportEvery = 50 * time.Millisecond

// reporter sends progress and previews from its own goroutine, waking at
// most every reportEvery, so that the denoising loop never waits for a gRPC
// send or a PNG encode and does not wake a goroutine per step: measured on
// a 2-core machine, a wake-up per step slowed the UNet calls of a small
// model by about 7%. Every step's progress is still delivered, in order
// (late by up to reportEvery); close sends what is left, so the host sees
// the last step before the node's outputs.
type reporter struct {
	ctx   *sdk.Context
	total int64

	mu      sync.Mutex
	done    int64        // steps finished by the loop
	preview *image.NRGBA // newest preview not yet sent

	sent int64 // steps reported (reporter goroutine only)
	stop chan struct{}
	exit chan struct{}
	once sync.Once
}

func newReporter(ctx *sdk.Context, steps int) *reporter {
	r := &reporter{ctx: ctx, total: int64(steps), stop: make(chan struct{}), exit: make(chan struct{})}
	go r.loop()
	return r
}

func (r *reporter) loop() {
	defer close(r.exit)
	t := time.NewTicker(reportEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-r.stop:
			r.flush()
			return
		}
	}
}

func (r *reporter) flush() {
	r.mu.Lock()
	done, img := r.done, r.preview
	r.preview = nil
	r.mu.Unlock()
	for ; r.sent < done; r.sent++ {
		r.ctx.Progress(r.sent+1, r.total)
	}
	if img != nil {
		r.ctx.Preview(img)
	}
}

// step records that step i (0-based) is done.
func (r *reporter) step(i int) {
	r.mu.Lock()
	r.done = int64(i + 1)
	r.mu.Unlock()
}

// image records a preview; a newer one replaces it if it was not sent yet.
func (r *reporter) image(img *image.NRGBA) {
	r.mu.Lock()
	r.preview = img
	r.mu.Unlock()
}

// close sends what is left and stops the goroutine.
func (r *reporter) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.exit
}
