// Package orttest is for tests that need onnxruntime: they skip with the
// reason when the library is not installed (a user's clone before
// scripts/setup.sh) and fail on any other set-up error.
package orttest

import (
	"errors"
	"testing"

	"github.com/face0/face0/ml/ort"
)

// Require initialises onnxruntime or skips the test.
func Require(t testing.TB) {
	t.Helper()
	if err := ort.Init(); err != nil {
		if errors.Is(err, ort.ErrNoLibrary) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
}
