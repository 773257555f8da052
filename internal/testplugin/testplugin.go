// Package testplugin builds real plugin binaries for tests: the engine and host
// are tested against plugin processes, never in-process fakes.
package testplugin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/face0/face0/internal/assets"
)

// Build compiles the Go main package at pkg (a path relative to the module root,
// like "./internal/testplugin/testpack") into dir and returns the binary's path.
func Build(dir, pkg, name string) (string, error) {
	return BuildTags(dir, pkg, name)
}

// BuildTags is Build with build tags (like face0memtest, which makes a
// plugin report its memory; see plugins/sdk/memtest.go).
func BuildTags(dir, pkg, name string, tags ...string) (string, error) {
	root, err := assets.ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// TestPack builds the engine's test pack.
func TestPack(dir string) (string, error) {
	return Build(dir, "./internal/testplugin/testpack", "testpack")
}

// Face0 builds the face0 binary itself, whose `plugin <pack>` mode serves the
// built-in packs.
func Face0(dir string) (string, error) {
	return Build(dir, "./cmd/face0", "face0")
}

// Hostile builds the plugin that misbehaves on purpose (hangs, panics,
// ignores cancellation, floods its output), for the reliability tests.
func Hostile(dir string) (string, error) {
	return Build(dir, "./internal/testplugin/hostile", "hostile")
}
