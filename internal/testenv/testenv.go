// Package testenv gives tests the files that live outside the repository, and skips
// with a clear message (never passes vacuously) when they are absent.
package testenv

import (
	"path/filepath"
	"testing"

	"github.com/face0/face0/internal/assets"
)

// Shared returns the path of a file or folder inside ../shared, or skips the test.
func Shared(t testing.TB, rel ...string) string {
	t.Helper()
	d, err := assets.SharedDir()
	if err != nil {
		t.Skipf("skipping: %v; this test needs the project's shared test data", err)
	}
	return filepath.Join(append([]string{d}, rel...)...)
}

// FaceAPI returns a path inside the unpacked face-api npm package, or skips the test.
func FaceAPI(t testing.TB, rel ...string) string {
	t.Helper()
	d, err := assets.FaceAPIDir()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	return filepath.Join(append([]string{d}, rel...)...)
}
