//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes the same exclusive flock that bbolt takes on the file,
// waiting as long as bbolt's own timeout, and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server database %s: %w", path, err)
	}
	deadline := time.Now().Add(boltOptions.Timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("server database %s: lock: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, &errLocked{path: path}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
