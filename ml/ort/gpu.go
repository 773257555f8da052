package ort

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/face0/face0/internal/assets"
)

// GPUVersion is the onnxruntime release scripts/setup-gpu.sh installs: the
// npm registry's only Linux x64 build with the CUDA execution provider
// (built for CUDA 13 and cuDNN 9). onnxruntime_go v1.27.0 targets 1.24.1's
// API; 1.29.0 serves that API version too (ml/ort's tests pass on it).
const GPUVersion = "1.29.0"

// GPUDir is where scripts/setup-gpu.sh installs the GPU build:
// libonnxruntime.so with libonnxruntime_providers_shared.so and
// libonnxruntime_providers_cuda.so beside it.
func GPUDir() string { return filepath.Join(assets.CacheDir(), "onnxruntime-gpu-"+GPUVersion) }

// GPULibrary is the GPU build's core library.
func GPULibrary() string { return filepath.Join(GPUDir(), "libonnxruntime.so") }

// cudaProvider is the CUDA execution provider's library, which onnxruntime
// loads from beside its core library when a session asks for CUDA.
const cudaProvider = "libonnxruntime_providers_cuda.so"

// libraryNotes say what each library the CUDA provider needs belongs to,
// so that a missing one can be named as what to install.
var libraryNotes = map[string]string{
	"libcuda.so.1":        "the NVIDIA driver",
	"libcudart.so.13":     "the CUDA 13 runtime",
	"libcublas.so.13":     "cuBLAS from CUDA 13",
	"libcublasLt.so.13":   "cuBLASLt from CUDA 13",
	"libcurand.so.10":     "cuRAND from CUDA 13",
	"libcufft.so.12":      "cuFFT from CUDA 13",
	"libcudnn.so.9":       "cuDNN 9",
	"libnvrtc.so.13":      "NVRTC from CUDA 13",
	"libcudnn_graph.so.9": "cuDNN 9",
}

// dlopened are libraries the CUDA provider opens at run time rather than
// linking (so its ELF header does not list them) and cannot run
// convolutions without.
var dlopened = []string{"libcudnn.so.9"}

// MissingCUDALibraries lists the shared libraries that the CUDA provider
// beside lib (an onnxruntime core library) needs and the dynamic loader
// would not find, each with what it belongs to; nil when all are there. It
// errors when lib has no CUDA provider beside it at all.
func MissingCUDALibraries(lib string) ([]string, error) {
	prov := filepath.Join(filepath.Dir(lib), cudaProvider)
	f, err := elf.Open(prov)
	if err != nil {
		return nil, fmt.Errorf("ort: the cuda execution provider is not available in %s: it has no %s beside it (%v); install the GPU build with `make setup-gpu` (scripts/setup-gpu.sh), or set %s to another onnxruntime build with CUDA", lib, cudaProvider, err, LibEnv)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("ort: read %s: %w", prov, err)
	}
	dirs := searchDirs(filepath.Dir(prov), f)
	var missing []string
	for _, so := range append(needed, dlopened...) {
		if findLibrary(so, dirs) {
			continue
		}
		if note, ok := libraryNotes[so]; ok {
			missing = append(missing, so+" ("+note+")")
		} else {
			missing = append(missing, so)
		}
	}
	return missing, nil
}

// searchDirs are the folders the dynamic loader looks in for prov's
// dependencies: its RUNPATH/RPATH ($ORIGIN expanded), LD_LIBRARY_PATH,
// the folders of /etc/ld.so.conf, and the system defaults, plus
// /usr/local/cuda's lib folder and WSL's driver folder.
func searchDirs(origin string, f *elf.File) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		paths, _ := f.DynString(tag)
		for _, p := range paths {
			for _, d := range filepath.SplitList(p) {
				dirs = append(dirs, strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin))
			}
		}
	}
	dirs = append(dirs, filepath.SplitList(os.Getenv("LD_LIBRARY_PATH"))...)
	dirs = append(dirs, ldConfDirs("/etc/ld.so.conf", 0)...)
	arch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	dirs = append(dirs, "/lib/"+arch, "/usr/lib/"+arch, "/lib64", "/usr/lib64", "/lib", "/usr/lib",
		"/usr/local/cuda/lib64", "/usr/local/cuda/targets/"+strings.Replace(arch, "-linux-gnu", "-linux", 1)+"/lib", "/usr/lib/wsl/lib")
	return dirs
}

// ldConfDirs reads the folders of an ld.so.conf file, following include
// lines (with globs), as ldconfig does.
func ldConfDirs(path string, depth int) []string {
	if depth > 4 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if inc, ok := strings.CutPrefix(line, "include "); ok {
			pattern := strings.TrimSpace(inc)
			if !filepath.IsAbs(pattern) {
				pattern = filepath.Join(filepath.Dir(path), pattern)
			}
			matches, _ := filepath.Glob(pattern)
			for _, m := range matches {
				out = append(out, ldConfDirs(m, depth+1)...)
			}
			continue
		}
		out = append(out, line)
	}
	return out
}

// findLibrary reports whether so exists in one of dirs.
func findLibrary(so string, dirs []string) bool {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(d, so)); err == nil && !st.IsDir() {
			return true
		}
	}
	return false
}

// cudaCheck is run before a CUDA session is created: it names what is
// missing instead of onnxruntime's "Failed to load library" with one name.
func cudaCheck(lib string) error {
	missing, err := MissingCUDALibraries(lib)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("ort: the cuda execution provider is not available in %s on this machine: missing %s (it needs an NVIDIA driver, CUDA 13 and cuDNN 9: install them, or put the folders that hold them on LD_LIBRARY_PATH, see scripts/setup-gpu.sh; or set %s to an onnxruntime build for the CUDA you have; or use the cpu device)",
		lib, strings.Join(missing, ", "), LibEnv)
}

// FindLibrary reports whether the dynamic loader's search path (without a
// library's own RUNPATH) holds so.
func FindLibrary(so string) bool {
	return findLibrary(so, searchDirs("", &elf.File{}))
}
