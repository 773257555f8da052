package cache

import (
	"encoding/binary"
	"errors"
)

// Bucket names and the index format version. The version lets a future build
// refuse (or migrate) an index it does not understand instead of misreading it.
var (
	bucketEntries = []byte("entries")
	bucketInline  = []byte("inline")
	bucketBlobs   = []byte("blobs")
	bucketMeta    = []byte("meta")
	metaFormat    = []byte("format")
)

const formatVersion = 1

// Entry record layout (little endian), chosen fixed-width so that persisting an
// access time rewrites a small record and never touches the inline value:
//
//	[0]      record version (1)
//	[1]      kind: kindInline or kindBlob
//	[2:10]   value size
//	[10:18]  created, unix nanoseconds
//	[18:26]  last access, unix nanoseconds
//	[26:58]  blob sha256 (zero for inline)
//	[58:]    producer
const (
	recVersion    = 1
	kindInline    = 0
	kindBlob      = 1
	offAccess     = 18
	recHeaderSize = 58
)

var errBadRecord = errors.New("malformed index record")

func encodeEntry(e *entry) []byte {
	b := make([]byte, recHeaderSize+len(e.producer))
	b[0] = recVersion
	if e.blob {
		b[1] = kindBlob
	}
	binary.LittleEndian.PutUint64(b[2:], uint64(e.size))
	binary.LittleEndian.PutUint64(b[10:], uint64(e.created))
	binary.LittleEndian.PutUint64(b[offAccess:], uint64(e.access))
	copy(b[26:58], e.hash[:])
	copy(b[recHeaderSize:], e.producer)
	return b
}

func decodeEntry(k Key, b []byte) (*entry, error) {
	if len(b) < recHeaderSize || b[0] != recVersion || b[1] > kindBlob {
		return nil, errBadRecord
	}
	e := &entry{
		key:      k,
		blob:     b[1] == kindBlob,
		size:     int64(binary.LittleEndian.Uint64(b[2:])),
		created:  int64(binary.LittleEndian.Uint64(b[10:])),
		access:   int64(binary.LittleEndian.Uint64(b[offAccess:])),
		producer: string(b[recHeaderSize:]),
	}
	copy(e.hash[:], b[26:58])
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
