package training

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/backends"

	"github.com/face0/face0/ml/ort"
)

// GPU training runs on GoMLX's XLA backend through a PJRT plugin. What a
// user installs for it (training/README.md, "Training on a GPU"):
//
//  1. face0 built with the backend: go build -tags xla ./cmd/face0 (cgo);
//  2. an NVIDIA GPU with its driver (libcuda.so.1, /dev/nvidia*);
//  3. the CUDA PJRT plugin, pjrt_c_api_cuda_plugin.so, with NVIDIA's
//     CUDA 13 libraries in an nvidia/ folder beside it. go-xla installs
//     both at first use into ~/.local/lib/go-xla (from PyPI's
//     jax-cuda13-pjrt and nvidia-* wheels) unless GOMLX_NO_AUTO_INSTALL is
//     set; PJRT_PLUGIN_LIBRARY_PATH points it at another folder.
//
// backendProblem checks these before GoMLX is asked, so a missing piece
// is named instead of surfacing as a panic or a dlopen message.

// xlaEnv are the environment variables go-xla reads.
const (
	pjrtPathEnv     = "PJRT_PLUGIN_LIBRARY_PATH"
	noAutoInstall   = "GOMLX_NO_AUTO_INSTALL"
	xlaFlagsEnv     = "XLA_FLAGS"
	cudaDataDirFlag = "--xla_gpu_cuda_data_dir"
)

// TrainingOnGPU is where the README explains the set-up.
const TrainingOnGPU = "training/README.md, \"Training on a GPU\""

// backendProblem says what is missing for the backend config names
// ("go", "xla:cuda", "xla:cpu"...), or nil. registered are the backends
// compiled into this binary.
func backendProblem(config string, registered []string) error {
	name, plugin, _ := strings.Cut(config, ":")
	if !slices.Contains(registered, name) {
		if name == "xla" || name == "stablehlo" {
			return fmt.Errorf("%s=%s: this face0 was built without GoMLX's XLA backend; build it with `go build -tags xla -o bin/face0 ./cmd/face0` (needs cgo and a C compiler), see %s", backends.ConfigEnvVar, config, TrainingOnGPU)
		}
		return fmt.Errorf("%s=%s: no GoMLX backend %q in this binary (it has %s)", backends.ConfigEnvVar, config, name, strings.Join(registered, ", "))
	}
	if name != "xla" || !strings.HasPrefix(plugin, "cuda") {
		return nil
	}
	home, _ := os.UserHomeDir()
	_, noInstall := os.LookupEnv(noAutoInstall)
	return cudaProblem(gpuDevices(), pluginDirs(home), noInstall)
}

// gpuDevices are the NVIDIA device files (none: no GPU visible).
func gpuDevices() []string {
	m, _ := filepath.Glob("/dev/nvidia[0-9]*")
	return m
}

// pluginDirs are the folders go-xla searches for PJRT plugins, in its order.
func pluginDirs(home string) []string {
	if p, ok := os.LookupEnv(pjrtPathEnv); ok {
		return slices.DeleteFunc(strings.Split(p, ":"), func(s string) bool { return s == "" })
	}
	var dirs []string
	if home != "" {
		x := filepath.Join(home, ".local", "lib", "go-xla")
		dirs = append(dirs, x, filepath.Join(x, "nvidia"), filepath.Join(home, ".local", "lib", "gomlx", "pjrt"))
	}
	dirs = append(dirs, "/usr/local/lib/go-xla", "/usr/local/lib/go-xla/nvidia", "/usr/local/lib/gomlx/pjrt")
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if filepath.IsAbs(d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// cudaPlugin finds the CUDA PJRT plugin in dirs.
func cudaPlugin(dirs []string) string {
	for _, d := range dirs {
		for _, n := range []string{"pjrt_c_api_cuda_plugin.so", "pjrt-plugin-cuda.so", "pjrt_plugin_cuda.so"} {
			if p := filepath.Join(d, n); fileExists(p) {
				return p
			}
		}
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// cudaProblem names what xla:cuda lacks: a visible GPU, its driver, and
// (when go-xla may not fetch it) the plugin. With a plugin found it also
// points XLA at the CUDA folder beside it (see fixCUDADataDir).
func cudaProblem(devices, dirs []string, noInstall bool) error {
	var missing []string
	if len(devices) == 0 {
		missing = append(missing, "an NVIDIA GPU (no /dev/nvidia* device: none is installed, or this container was not given one)")
	}
	if !ort.FindLibrary("libcuda.so.1") {
		missing = append(missing, "the NVIDIA driver's libcuda.so.1")
	}
	plugin := cudaPlugin(dirs)
	if plugin != "" {
		fixCUDADataDir(plugin)
	}
	if plugin == "" && (noInstall || len(devices) == 0) {
		how := "unset " + noAutoInstall + " to let go-xla download it (PyPI's jax-cuda13-pjrt and NVIDIA's CUDA 13 wheels, into ~/.local/lib/go-xla/nvidia), or install it there yourself"
		if !noInstall {
			how = "go-xla downloads it at first use only on a machine with a GPU"
		}
		missing = append(missing, fmt.Sprintf("the CUDA PJRT plugin pjrt_c_api_cuda_plugin.so (looked in %s; %s)", strings.Join(dirs, ", "), how))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s=xla:cuda cannot train here: missing %s. Train on the CPU instead (unset %s), see %s", backends.ConfigEnvVar, strings.Join(missing, "; "), backends.ConfigEnvVar, TrainingOnGPU)
	}
	return nil
}

// fixCUDADataDir points XLA's GPU compiler at the CUDA folder installed
// beside the plugin (nvidia/, where ptxas and libdevice are), unless the
// user set it. go-xla v0.1.4 would otherwise set it to a developer's home
// folder (a hard-coded path in its cudaPluginCheckDrivers).
func fixCUDADataDir(plugin string) {
	flags := os.Getenv(xlaFlagsEnv)
	if strings.Contains(flags, cudaDataDirFlag) {
		return
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(plugin)), "nvidia")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = filepath.Join(filepath.Dir(plugin), "nvidia")
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return
		}
	}
	os.Setenv(xlaFlagsEnv, strings.TrimSpace(flags+" "+cudaDataDirFlag+"="+dir))
}
