package cache

import (
	"fmt"
	"io"
	"log"
	"os"
	"time"
)

// Defaults, chosen for a developer machine: a generous cap, inline values small
// enough that the bbolt file stays compact, and a lock wait short enough that a
// second face0 process fails promptly rather than appearing to hang.
const (
	DefaultMaxBytes      int64 = 20 << 30
	DefaultInlineLimit         = 16 << 10
	DefaultLockTimeout         = 2 * time.Second
	DefaultFlushInterval       = 5 * time.Second
	// DefaultMaxPending bounds the bytes of values accepted by Put but not
	// yet written: a few large tensors, so a burst of outputs does not wait
	// for the disk, while a disk slower than the workflow cannot grow memory
	// without bound.
	DefaultMaxPending int64 = 256 << 20

	// flushThreshold is how many pending access-time updates wake the
	// background flusher early, bounding both memory and lost recency.
	flushThreshold = 1024
)

type config struct {
	maxBytes      int64
	inlineLimit   int
	now           func() time.Time
	lockTimeout   time.Duration
	flushInterval time.Duration
	maxPending    int64
	log           *log.Logger
	err           error
}

// Option configures Open.
type Option func(*config)

func defaultConfig() config {
	return config{
		maxBytes:      DefaultMaxBytes,
		inlineLimit:   DefaultInlineLimit,
		now:           time.Now,
		lockTimeout:   DefaultLockTimeout,
		flushInterval: DefaultFlushInterval,
		maxPending:    DefaultMaxPending,
		log:           newLogger(os.Stderr),
	}
}

func newLogger(w io.Writer) *log.Logger { return log.New(w, "", 0) }

// fail records the first invalid option so Open can report it; options cannot
// return errors themselves without complicating every call site.
func (c *config) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("cache: "+format, args...)
	}
}

// WithMaxBytes caps the bytes stored (inline values plus distinct blobs).
// 0 means unlimited. The default is 20 GiB.
func WithMaxBytes(n int64) Option {
	return func(c *config) {
		if n < 0 {
			c.fail("WithMaxBytes(%d): the cap must be >= 0 (0 means unlimited)", n)
			return
		}
		c.maxBytes = n
	}
}

// WithInlineLimit sets the largest value kept inside index.db; larger values
// become blob files. The default is 16 KiB.
func WithInlineLimit(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.fail("WithInlineLimit(%d): the limit must be >= 0", n)
			return
		}
		c.inlineLimit = n
	}
}

// WithClock replaces time.Now, so tests can control recency and timestamps.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail("WithClock(nil): pass a clock function")
			return
		}
		c.now = now
	}
}

// WithLockTimeout bounds how long Open waits for another process to release
// index.db. 0 means try once and fail immediately. The default is 2s.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail("WithLockTimeout(%v): the timeout must be >= 0", d)
			return
		}
		c.lockTimeout = d
	}
}

// WithFlushInterval sets how often the background writer persists pending
// access times. 0 disables the ticker; access times are then persisted only
// with writes, on Flush, on Close, or when many are pending. The default is 5s.
func WithFlushInterval(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail("WithFlushInterval(%v): the interval must be >= 0", d)
			return
		}
		c.flushInterval = d
	}
}

// WithLog sends the store's warnings to w (default stderr): entries dropped
// because they failed verification, a damaged index moved aside, results that
// could not be written. Each is one line starting "cache: ". The CLI and the
// server pass their own log here so the user sees them.
func WithLog(w io.Writer) Option {
	return func(c *config) {
		if w == nil {
			c.fail("WithLog(nil): pass a writer, such as io.Discard to drop warnings")
			return
		}
		c.log = newLogger(w)
	}
}

// WithMaxPending bounds the bytes of values that Put has accepted but the
// background writer has not yet made durable (default 256 MiB). A Put that
// would exceed it waits until the writer catches up; one value larger than
// the bound is accepted once nothing else is pending. The bound must be > 0.
func WithMaxPending(n int64) Option {
	return func(c *config) {
		if n <= 0 {
			c.fail("WithMaxPending(%d): the bound must be > 0", n)
			return
		}
		c.maxPending = n
	}
}
