package server

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Queue and history records are sealed: a version byte, a CRC-32C of the key
// and the JSON, then the JSON. bbolt checks its pages' structure but not the
// bytes of a value, so without the seal a flipped bit inside a history entry
// would come back as a different, wrong entry; with it, the entry is known to
// be unreadable (and is left out, or dropped by the salvage at start).
//
// Records written before sealing start with '{' and are read as they are.

const recordSealed = 0x01

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func recordSum(key, js []byte) uint32 {
	sum := crc32.Update(0, castagnoli, key)
	sum = crc32.Update(sum, castagnoli, []byte{0})
	return crc32.Update(sum, castagnoli, js)
}

// sealRecord returns the stored form of js under key.
func sealRecord(key string, js []byte) []byte {
	out := make([]byte, 5, 5+len(js))
	out[0] = recordSealed
	binary.BigEndian.PutUint32(out[1:], recordSum([]byte(key), js))
	return append(out, js...)
}

var (
	errRecordFormat = errors.New("not a record this version writes")
	errRecordSum    = errors.New("its checksum does not match: the bytes were damaged")
)

// unsealRecord returns the JSON of a stored record, checking its seal. The
// result aliases b.
func unsealRecord(key, b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] == '{' {
		return b, nil // written before records were sealed
	}
	if len(b) < 5 || b[0] != recordSealed {
		return nil, errRecordFormat
	}
	js := b[5:]
	if binary.BigEndian.Uint32(b[1:]) != recordSum(key, js) {
		return nil, errRecordSum
	}
	return js, nil
}
