// Package cache is face0's durable, content-addressed store of node outputs.
//
// The engine derives a 32-byte Key for every node execution (a Merkle-style
// hash over the node type, versions, literal inputs and upstream keys). This
// package never computes keys; it stores opaque byte values under them, so a
// re-run of an unchanged workflow can skip every node whose key is present.
//
// # On-disk layout
//
//	dir/index.db                 bbolt database: the index (see below)
//	dir/blobs/ab/abcdef...       one file per distinct large value, named by
//	                             the lowercase hex sha256 of its content,
//	                             fanned out by the first two hex characters
//	dir/blobs/ab/.tmp-*          in-flight writes; removed on Open
//
// index.db holds four buckets:
//
//	entries  Key -> fixed record: kind, size, created, last access, blob hash, producer
//	inline   Key -> value, for values no larger than the inline limit (16 KiB default)
//	blobs    sha256 -> reference count and size
//	meta     format version
//
// Identical large values under different keys share one blob file; the
// reference count in the blobs bucket says how many entries use it, and the
// file is deleted when the last one goes.
//
// # Guarantees
//
//   - Crash safety: a blob is written to a temp file in its final directory,
//     fsynced, renamed into place and the directory fsynced before the index
//     transaction that references it commits. Blob files are removed only after
//     the transaction that drops their last reference commits. A crash can
//     therefore leave unreferenced files (cleaned up by the next Open) but never
//     an index entry pointing at a missing or partial blob.
//   - Integrity: every blob read is checked against the sha256 in its name. A
//     missing, truncated or altered blob is reported as a miss, its entry is
//     removed and Stats.Corrupt is incremented; corrupt data is never returned.
//   - Bounded size: with a byte cap (20 GiB by default), a Put that pushes the
//     stored bytes over the cap evicts least-recently-used entries until the
//     store fits again. Bytes count what is physically stored: inline values
//     plus each distinct blob once.
//   - Cheap reads: Get performs no index write. Access times are kept in memory
//     and persisted in batches (piggybacked on the next write, by a background
//     flusher, by Flush and by Close). A crash loses only recency information,
//     never values.
//   - Exclusivity: one process at a time. A second process (or a second Open in
//     the same process) fails after the lock timeout with an error naming the
//     directory, instead of waiting forever.
//
// A Store is safe for concurrent use by multiple goroutines. Caching is best
// effort: a value larger than the cap is silently not stored, and callers
// should treat any error as "not cached" rather than as a failed workflow.
package cache
