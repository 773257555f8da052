package cache

import (
	"encoding/hex"
	"fmt"
)

// Key identifies one node execution. The engine derives it; the cache treats it
// as an opaque 32-byte name.
type Key [32]byte

// String returns the key as 64 lowercase hex characters, the form ParseKey
// accepts and the form used in logs and CLI output.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// ParseKey parses the 64-hex-character form produced by Key.String.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*len(k) {
		return Key{}, fmt.Errorf("cache: invalid key %q: want %d hex characters, got %d", s, 2*len(k), len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return Key{}, fmt.Errorf("cache: invalid key %q: %v", s, err)
	}
	return k, nil
}
