package host

import (
	"fmt"
	"io"
	"time"

	"github.com/face0/face0/plugins/protocol"
)

// Deadlines bound the plugin calls that must answer promptly, so that one
// plugin that hangs cannot hold up face0's start, a catalog refresh or a
// node's cache lookup. Execute has none: a node may rightly run for minutes
// (training); it answers to cancellation instead, within CancelGrace.
type Deadlines struct {
	// Start bounds starting a plugin process and its handshake.
	Start time.Duration
	// Describe bounds listing a pack's nodes. A pack that misses it at start
	// is left out; on a refresh it keeps the node specs it had.
	Describe time.Duration
	// Fingerprint bounds computing a node's fingerprint before its cache
	// lookup (it may hash a large file).
	Fingerprint time.Duration
	// CancelGrace is how long a cancelled node may keep running. A node still
	// running after it has its process retired: new calls go to a fresh
	// process, and the old one is stopped as soon as nothing else runs there.
	CancelGrace time.Duration
}

// DefaultDeadlines are the deadlines unless configured otherwise.
func DefaultDeadlines() Deadlines {
	return Deadlines{Start: 30 * time.Second, Describe: 10 * time.Second, Fingerprint: 60 * time.Second, CancelGrace: 10 * time.Second}
}

// The environment variables DeadlinesFromEnv reads (Go durations: "45s", "2m").
const (
	EnvStartTimeout       = "FACE0_PLUGIN_START_TIMEOUT"
	EnvDescribeTimeout    = "FACE0_PLUGIN_DESCRIBE_TIMEOUT"
	EnvFingerprintTimeout = "FACE0_PLUGIN_FINGERPRINT_TIMEOUT"
	EnvCancelGrace        = protocol.EnvCancelGrace
)

// DeadlinesFromEnv returns the default deadlines with those set in the
// environment (getenv is os.Getenv outside tests) in their place.
func DeadlinesFromEnv(getenv func(string) string) (Deadlines, error) {
	d := DefaultDeadlines()
	for _, v := range []struct {
		env string
		to  *time.Duration
	}{
		{EnvStartTimeout, &d.Start}, {EnvDescribeTimeout, &d.Describe},
		{EnvFingerprintTimeout, &d.Fingerprint}, {EnvCancelGrace, &d.CancelGrace},
	} {
		s := getenv(v.env)
		if s == "" {
			continue
		}
		t, err := time.ParseDuration(s)
		if err != nil || t <= 0 {
			return d, fmt.Errorf("%s=%q: want a positive duration like 30s or 2m", v.env, s)
		}
		*v.to = t
	}
	return d, nil
}

// withDefaults fills the zero fields of d from DefaultDeadlines.
func (d Deadlines) withDefaults() Deadlines {
	def := DefaultDeadlines()
	for _, f := range []struct{ v, def *time.Duration }{
		{&d.Start, &def.Start}, {&d.Describe, &def.Describe}, {&d.Fingerprint, &def.Fingerprint}, {&d.CancelGrace, &def.CancelGrace},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return d
}

// Option configures a Manager.
type Option func(*Manager)

// WithLog sends plugin stderr and supervision messages to w (default stderr).
func WithLog(w io.Writer) Option { return func(m *Manager) { m.log = w } }

// WithDeadlines sets the deadlines of plugin calls; zero fields keep their
// default.
func WithDeadlines(d Deadlines) Option { return func(m *Manager) { m.deadlines = d.withDefaults() } }
