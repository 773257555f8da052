//go:build xla

package training

// Built with `-tags xla`, the binary also links GoMLX's XLA backend
// (PJRT), so GOMLX_BACKEND=xla:cuda (or xla:cpu) trains on it. The PJRT
// plugin itself (pjrt_c_api_*_plugin.so) is loaded at run time from where
// github.com/gomlx/gopjrt's installer puts it; see training/README.md. The
// pure-Go backend stays the default.
import _ "github.com/gomlx/gomlx/backends/xla"
