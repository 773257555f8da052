package cache

import (
	"encoding/binary"
	"errors"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
)

// Bucket names and the index format version. The version lets a build
// recognise an index written by another build instead of misreading it.
var (
	bucketEntries = []byte("entries")
	bucketInline  = []byte("inline")
	bucketBlobs   = []byte("blobs")
	bucketMeta    = []byte("meta")
	metaFormat    = []byte("format")
)

// formatVersion 2: blobs are named by BLAKE3 (1 used sha256), inline values
// carry a checksum and every record a checksum of itself and its key.
const formatVersion = 2

// Entry record layout (little endian), fixed-width so that persisting an
// access time rewrites a small record and never touches the inline value:
//
//	[0]      record version (2)
//	[1]      kind: kindInline or kindBlob
//	[2:10]   value size
//	[10:18]  created, unix nanoseconds
//	[18:26]  last access, unix nanoseconds
//	[26:58]  digest: for a blob its BLAKE3-256 (the file name); for an
//	         inline value its XXH3-128, zero-padded
//	[58:66]  XXH3-64 of the key and this record with these 8 bytes zero
//	[66:]    producer
//
// The record checksum covers the key, so an entry whose key was damaged
// cannot answer for another key; the digest covers the value.
const (
	recVersion    = 2
	kindInline    = 0
	kindBlob      = 1
	offAccess     = 18
	offDigest     = 26
	offSum        = 58
	recHeaderSize = 66
)

var errBadRecord = errors.New("malformed index record")

// digestOf returns what verifies a value on read. Blobs need a cryptographic
// hash because identical content under different keys shares one file named
// by it (a collision would serve one key's value for another); BLAKE3 is that
// and several times faster than sha256. Inline values are never shared, so
// they only need damage detection: XXH3-128 runs at memory speed.
func digestOf(blob bool, v []byte) (d [32]byte) {
	if blob {
		return blake3.Sum256(v)
	}
	h := xxh3.Hash128(v).Bytes()
	copy(d[:], h[:])
	return d
}

func encodeEntry(e *entry) []byte {
	b := make([]byte, recHeaderSize+len(e.producer))
	b[0] = recVersion
	if e.blob {
		b[1] = kindBlob
	}
	binary.LittleEndian.PutUint64(b[2:], uint64(e.size))
	binary.LittleEndian.PutUint64(b[10:], uint64(e.created))
	copy(b[offDigest:offSum], e.digest[:])
	copy(b[recHeaderSize:], e.producer)
	setAccess(e.key, b, e.access)
	return b
}

// setAccess stores an access time in rec and re-seals its checksum.
func setAccess(k Key, rec []byte, access int64) {
	binary.LittleEndian.PutUint64(rec[offAccess:], uint64(access))
	binary.LittleEndian.PutUint64(rec[offSum:], recordSum(k, rec))
}

func recordSum(k Key, rec []byte) uint64 {
	h := xxh3.New()
	h.Write(k[:])
	h.Write(rec[:offSum])
	h.Write(make([]byte, 8))
	h.Write(rec[recHeaderSize:])
	return h.Sum64()
}

func decodeEntry(k Key, b []byte) (*entry, error) {
	if len(b) < recHeaderSize || b[0] != recVersion || b[1] > kindBlob ||
		binary.LittleEndian.Uint64(b[offSum:]) != recordSum(k, b) {
		return nil, errBadRecord
	}
	e := &entry{
		key:      k,
		blob:     b[1] == kindBlob,
		size:     int64(binary.LittleEndian.Uint64(b[2:])),
		created:  int64(binary.LittleEndian.Uint64(b[10:])),
		access:   int64(binary.LittleEndian.Uint64(b[offAccess:])),
		producer: string(b[recHeaderSize:]),
		hashed:   true,
	}
	copy(e.digest[:], b[offDigest:offSum])
	if e.size < 0 {
		return nil, errBadRecord
	}
	return e, nil
}

// Blob record: reference count then size, both uint64.
func encodeBlob(refs, size int64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(refs))
	binary.LittleEndian.PutUint64(b[8:], uint64(size))
	return b
}

func decodeBlob(b []byte) (refs, size int64, err error) {
	if len(b) != 16 {
		return 0, 0, errBadRecord
	}
	return int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:])), nil
}
