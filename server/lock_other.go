//go:build !unix

package server

// lockFile is a no-op where flock does not exist; bbolt's own lock still
// keeps two servers apart once the file is open.
func lockFile(string) (func(), error) { return func() {}, nil }
