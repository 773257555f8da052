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
//	dir/index.db.damaged         the last index found damaged, kept for study
//	dir/blobs/ab/abcdef...       one file per distinct large value, named by
//	                             the lowercase hex BLAKE3-256 of its content,
//	                             fanned out by the first two hex characters
//	dir/blobs/ab/.tmp-*          in-flight writes; removed on Open
//
// index.db holds four buckets:
//
//	entries  Key -> record: kind, size, created, last access, digest, producer,
//	                and a checksum of the record and its key
//	inline   Key -> value, for values no larger than the inline limit (16 KiB default)
//	blobs    BLAKE3 -> reference count and size
//	meta     format version (2)
//
// Identical large values under different keys share one blob file; the
// reference count in the blobs bucket says how many entries use it, and the
// file is deleted when the last one goes. An index in an older format (1
// named blobs by sha256 and had no checksums) is cleared on Open, with a
// message; one in a newer format is refused, untouched.
//
// # Writing
//
// Put returns without touching the disk. The value is visible to Get and
// Info at once (served from memory) and a single background writer makes it
// durable: it takes everything that changed since its last batch, hashes the
// values, writes new blob files (each fsynced, renamed into place, its
// directory fsynced) and then commits one index transaction for the whole
// batch. Batches grow with the rate of Puts, so a burst of results costs a
// few fsyncs, none of them on the caller's path. Flush and Close wait until
// everything before them is durable. Put takes ownership of its value and
// keeps it until it is durable; values waiting for the writer are bounded
// (WithMaxPending, 256 MiB by default): beyond that Put waits for the writer.
//
// # Guarantees
//
//   - Crash safety: a blob file is durable before the index transaction that
//     references it commits, and removed only after the transaction that drops
//     its last reference commits. A crash (kill -9, power loss) loses at most
//     the values Put since the last batch committed, or a key's latest value
//     (it then holds its previous one), and may leave unreferenced files (the
//     next Open removes them); it never leaves an entry pointing at a missing
//     or partial blob, and never a wrong value.
//   - Integrity: every value is verified on every read from disk: a blob
//     against the BLAKE3 in its name, an inline value against the XXH3-128
//     digest in its record, and every record against its own XXH3 checksum,
//     which covers its key. A value that fails is a miss: its entry (and every
//     entry sharing a damaged blob) is dropped, Stats.Corrupt is incremented
//     and a warning is logged (WithLog); corrupt data is never returned.
//   - A damaged index never crashes or hangs the process. Every bbolt call
//     runs with memory faults turned into panics (a truncated file makes
//     bbolt's memory map fault) and panics recovered (bbolt panics on garbage
//     pages). The numbers bbolt follows without checking (page types, overflow
//     counts, child pointers, element offsets, the freelist) are checked first:
//     the whole tree at Open, the freelist page before every commit. Damage
//     found then, or by any later read or write, moves index.db to
//     index.db.damaged and starts an empty index, with a warning. Values not
//     yet written survive into the new index; everything else becomes a miss.
//     (One case remains: a page rewritten by another program while the store
//     runs, coherent enough to point back at its own ancestor, would make a
//     read that reaches it descend forever. Open would catch it.)
//   - Bounded size: with a byte cap (20 GiB by default), the writer evicts
//     least-recently-used entries in the batch that pushes the store over the
//     cap. Bytes count what is stored: inline values plus each distinct blob
//     once. Until a batch commits, values waiting for it are counted too, and
//     blobs not yet hashed are counted before deduplication.
//   - Cheap reads: Get performs no index write. Access times are kept in memory
//     and persisted in batches (with the next write batch, on the flush
//     interval, by Flush and by Close). A crash loses only recency information.
//   - Exclusivity: one process at a time. A second process (or a second Open in
//     the same process) fails after the lock timeout with an error naming the
//     directory, instead of waiting forever.
//
// A Store is safe for concurrent use by multiple goroutines. Caching is best
// effort: a value larger than the cap is silently not stored, a value that
// cannot be written (disk full) is dropped with a warning, and callers should
// treat any error as "not cached" rather than as a failed workflow.
package cache
