// Package ort runs ONNX models with onnxruntime through
// github.com/yalue/onnxruntime_go (v1.27.0, which targets onnxruntime 1.24.1).
//
// The shared library is found at $FACE0_ORT_LIB, else where
// scripts/setup.sh installs it (internal/assets.CacheDir()). The onnxruntime
// environment is process-wide and created once, on first use.
package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/face0/face0/internal/assets"
)

// Version is the onnxruntime release this package is built against.
const Version = "1.24.1"

// LibEnv names the environment variable that overrides the library path.
const LibEnv = "FACE0_ORT_LIB"

// LibraryPath is the onnxruntime shared library this process uses:
// $FACE0_ORT_LIB if set; else the GPU build scripts/setup-gpu.sh installs
// (make setup-gpu, an opt-in: it runs the CPU device as well, and a
// session asks for CUDA only when its device is cuda); else the CPU copy
// scripts/setup.sh installs.
func LibraryPath() string {
	if p := os.Getenv(LibEnv); p != "" {
		return p
	}
	if st, err := os.Stat(GPULibrary()); err == nil && !st.IsDir() {
		return GPULibrary()
	}
	return CPULibrary()
}

// CPULibrary is where scripts/setup.sh installs the CPU build.
func CPULibrary() string {
	return filepath.Join(assets.CacheDir(), "onnxruntime-"+Version, "libonnxruntime.so."+Version)
}

// ErrNoLibrary is wrapped by Init's error when the shared library is absent,
// so tests and callers can tell "not installed" from "broken".
var ErrNoLibrary = errors.New("onnxruntime library not found")

var (
	initOnce sync.Once
	initErr  error
)

// Init loads the library and creates the process-wide onnxruntime
// environment. Only the first call does work; later calls return its result.
// onnxruntime allows one environment per process, and onnxruntime_go keeps it
// in a package global, so the environment is never destroyed: sessions from
// any goroutine share it until the process exits.
func Init() error {
	initOnce.Do(func() {
		lib := LibraryPath()
		if _, err := os.Stat(lib); err != nil {
			initErr = fmt.Errorf("ort: %w at %s: run scripts/setup.sh (or set %s to a libonnxruntime.so of version %s)", ErrNoLibrary, lib, LibEnv, Version)
			return
		}
		if ortgo.IsInitialized() {
			return // someone else in this process set it up already
		}
		ortgo.SetSharedLibraryPath(lib)
		if err := ortgo.InitializeEnvironment(ortgo.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("ort: initialise onnxruntime from %s: %w (is it version %s, or the GPU build %s, for this platform?)", lib, err, Version, GPUVersion)
		}
	})
	return initErr
}

// RuntimeVersion is the version string the loaded library reports.
func RuntimeVersion() (string, error) {
	if err := Init(); err != nil {
		return "", err
	}
	return ortgo.GetVersion(), nil
}

// Options configure a session.
type Options struct {
	// Provider is the execution provider: "" or "cpu" (default), "cuda" or
	// "tensorrt". GPU providers need an onnxruntime build that has them
	// (make setup-gpu installs one; FACE0_ORT_LIB may point at another);
	// the CPU library setup.sh installs has none, and asking for one is an
	// error that says what is missing rather than a silent CPU fallback.
	Provider string
	// DeviceID selects the GPU for cuda/tensorrt.
	DeviceID int
	// IntraOpThreads caps the threads one Run uses (0: onnxruntime's default,
	// one per physical core). Set it when several models run at once.
	IntraOpThreads int
}

func (o Options) key() string {
	return fmt.Sprintf("%s/%d/%d", o.provider(), o.DeviceID, o.IntraOpThreads)
}

func (o Options) provider() string {
	if o.Provider == "" {
		return "cpu"
	}
	return o.Provider
}

// sessionOptions builds onnxruntime's options; the caller destroys them.
func (o Options) sessionOptions() (*ortgo.SessionOptions, error) {
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	fail := func(err error) (*ortgo.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fail(fmt.Errorf("ort: set threads: %w", err))
		}
	}
	dev := map[string]string{"device_id": fmt.Sprint(o.DeviceID)}
	switch o.provider() {
	case "cpu":
	case "cuda":
		if err := cudaCheck(LibraryPath()); err != nil {
			return fail(err)
		}
		co, err := ortgo.NewCUDAProviderOptions()
		if err != nil {
			return fail(noProvider("cuda", err))
		}
		defer co.Destroy()
		if err := co.Update(dev); err != nil {
			return fail(noProvider("cuda", err))
		}
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			return fail(noProvider("cuda", err))
		}
	case "tensorrt":
		to, err := ortgo.NewTensorRTProviderOptions()
		if err != nil {
			return fail(noProvider("tensorrt", err))
		}
		defer to.Destroy()
		if err := to.Update(dev); err != nil {
			return fail(noProvider("tensorrt", err))
		}
		if err := so.AppendExecutionProviderTensorRT(to); err != nil {
			return fail(noProvider("tensorrt", err))
		}
	default:
		return fail(fmt.Errorf("ort: unknown execution provider %q (use cpu, cuda or tensorrt)", o.Provider))
	}
	return so, nil
}

func noProvider(name string, err error) error {
	return fmt.Errorf("ort: the %s execution provider is not available in %s: %v (install the GPU build with `make setup-gpu`, or set %s to an onnxruntime build with %s support, or use the cpu device)",
		name, LibraryPath(), err, LibEnv, name)
}
