// Package assets locates the third-party files that scripts/setup.sh installs
// (face-api weights and demo photos, the onnxruntime library) and the read-only
// ../shared folder that sits beside the repository in development and CI.
package assets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CacheDir is where scripts/setup.sh puts downloaded packages. Keep the rule in
// sync with the script: $FACE0_CACHE, else $XDG_CACHE_HOME/face0, else ~/.cache/face0.
func CacheDir() string {
	if d := os.Getenv("FACE0_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "face0")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "face0")
	}
	return filepath.Join(os.TempDir(), "face0-cache")
}

// FaceAPIDir is the unpacked @vladmandic/face-api@1.7.15 npm package (model/, demo/).
func FaceAPIDir() (string, error) {
	d := filepath.Join(CacheDir(), "face-api")
	if _, err := os.Stat(filepath.Join(d, ".complete")); err != nil {
		return "", fmt.Errorf("face-api package not installed in %s: run scripts/setup.sh", d)
	}
	return d, nil
}

// ErrNoShared is returned when the ../shared folder cannot be found.
var ErrNoShared = errors.New("../shared not found beside the repository (set FACE0_SHARED to its path)")

// SharedDir finds the read-only shared folder: $FACE0_SHARED, else "shared" beside
// the module root found by walking up from the working directory.
func SharedDir() (string, error) {
	if d := os.Getenv("FACE0_SHARED"); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(filepath.Dir(root), "shared")
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		return "", ErrNoShared
	}
	return d, nil
}

// ModuleRoot walks up from the working directory to the folder holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
