package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// This file reads bbolt's on-disk format by itself, with ordinary reads and a
// bounds check before every access. bbolt maps the file into memory and trusts
// it: a truncated file faults (SIGBUS) on the first access past its end, and a
// garbage page panics at Open or at any later read, both with a Go trace. So
// server.db is walked here first, and when that walk finds damage, what it
// could still read is what the salvage keeps (salvage.go).
//
// The format (bbolt v1.x, file format version 2), in native byte order:
//
//	page header (16 bytes): id uint64, flags uint16, count uint16, overflow uint32
//	meta (pages 0 and 1, after the header): magic, version, pageSize, flags uint32;
//	  root bucket {root pgid, sequence uint64}; freelist, pgid (high water), txid,
//	  checksum uint64 (FNV-64a of everything before it)
//	branch element (16 bytes): pos, ksize uint32, pgid uint64
//	leaf element (16 bytes): flags, pos, ksize, vsize uint32; flags&1 = sub-bucket,
//	  whose value is {root pgid, sequence} and, when root is 0, an inline page
//	freelist page: count ids (count 0xFFFF: the real count is the first id)

const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltHeaderSize   = 16
	boltElemSize     = 16
	boltMetaSize     = 64 // up to and including the checksum
	boltFlagBranch   = 0x01
	boltFlagLeaf     = 0x02
	boltFlagMeta     = 0x04
	boltFlagFreelist = 0x10
	boltBucketLeaf   = 0x01
	boltNoFreelist   = ^uint64(0)
	boltMaxDepth     = 64
	boltMaxPageBytes = 256 << 20 // a page with overflow beyond this is garbage
)

var ne = binary.NativeEndian

type boltMeta struct {
	pageSize           uint32
	root, rootSeq      uint64
	freelist, highPgid uint64
	txid               uint64
}

// parseBoltMeta reads and validates a meta page.
func parseBoltMeta(page []byte) (boltMeta, error) {
	if len(page) < boltHeaderSize+boltMetaSize {
		return boltMeta{}, errors.New("too short")
	}
	if ne.Uint16(page[8:]) != boltFlagMeta {
		return boltMeta{}, errors.New("not a meta page")
	}
	m := page[boltHeaderSize:]
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt file (bad magic)")
	}
	if ne.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, not %d", ne.Uint32(m[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, errors.New("meta checksum mismatch")
	}
	meta := boltMeta{
		pageSize: ne.Uint32(m[8:]), root: ne.Uint64(m[16:]), rootSeq: ne.Uint64(m[24:]),
		freelist: ne.Uint64(m[32:]), highPgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:]),
	}
	if meta.pageSize < 512 || meta.pageSize > 1<<20 || meta.pageSize&(meta.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("implausible page size %d", meta.pageSize)
	}
	if meta.root >= meta.highPgid || (meta.freelist != boltNoFreelist && meta.freelist >= meta.highPgid) {
		return boltMeta{}, errors.New("meta points past its own high-water mark")
	}
	return meta, nil
}

// boltScan is the result of walking a bbolt file.
type boltScan struct {
	meta     boltMeta
	problems []string // damage found; empty for a sound file
}

// boltVisitor receives what a walk finds: each bucket (its path and
// sequence) and each key/value pair in it. k and v are only valid during the call.
type boltVisitor interface {
	bucket(path []string, seq uint64)
	record(path []string, k, v []byte)
}

// boltWalker walks the live tree of a bbolt file: only pages reachable from
// the newest valid meta, so that nothing deleted comes back.
type boltWalker struct {
	r        io.ReaderAt
	size     int64
	meta     boltMeta
	visit    boltVisitor
	seen     map[uint64]bool
	problems []string
	free     [][]byte // page buffers to reuse
}

func (w *boltWalker) problem(format string, args ...any) {
	const max = 20
	if len(w.problems) < max {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	} else if len(w.problems) == max {
		w.problems = append(w.problems, "(more problems not listed)")
	}
}

// scanBolt checks the bbolt file at path without mapping it, handing what it
// can read to visit (nil: only check). An error means nothing could be read
// at all: no valid meta page. Damage below that is listed in problems.
func scanBolt(path string, visit boltVisitor) (*boltScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	size := st.Size()
	if size == 0 {
		return nil, errors.New("the file is empty (0 bytes): it was truncated")
	}
	meta, metaProblem, err := pickBoltMeta(f, size)
	if err != nil {
		return nil, err
	}
	w := &boltWalker{r: f, size: size, meta: meta, visit: visit, seen: map[uint64]bool{}}
	if metaProblem != "" {
		// bbolt would quietly use the other meta page: the state before the
		// last transaction, which may have lost that transaction's write.
		w.problem("%s; the file reads as of the transaction before", metaProblem)
	}
	if need := int64(meta.highPgid) * int64(meta.pageSize); size < need {
		w.problem("the file is truncated: %d bytes, its pages need %d", size, need)
	}
	w.checkFreelist()
	w.walkBucket(nil, meta.root, nil, 0)
	return &boltScan{meta: meta, problems: w.problems}, nil
}

// pickBoltMeta returns the valid meta page with the highest transaction id,
// as bbolt does, and what is wrong with the other one, if anything.
func pickBoltMeta(r io.ReaderAt, size int64) (boltMeta, string, error) {
	var metas []boltMeta
	var errs []string
	first := make([]byte, boltHeaderSize+boltMetaSize)
	sizes := []int64{int64(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	if _, err := r.ReadAt(first, 0); err == nil {
		if m, err := parseBoltMeta(first); err == nil {
			metas = append(metas, m)
			sizes = []int64{int64(m.pageSize)}
		} else {
			errs = append(errs, "meta page 0: "+err.Error())
		}
	} else {
		errs = append(errs, fmt.Sprintf("meta page 0: the file is %d bytes, too short", size))
	}
	var err1 error
	for _, ps := range sizes {
		buf := make([]byte, boltHeaderSize+boltMetaSize)
		if _, err := r.ReadAt(buf, ps); err != nil {
			err1 = fmt.Errorf("the file is %d bytes, too short", size)
			continue
		}
		m, err := parseBoltMeta(buf)
		if err == nil && (int64(m.pageSize) != ps || ne.Uint64(buf) != 1) {
			err = errors.New("not page 1")
		}
		if err == nil {
			metas = append(metas, m)
			err1 = nil
			break
		}
		err1 = err
	}
	if err1 != nil {
		errs = append(errs, "meta page 1: "+err1.Error())
	}
	if len(metas) == 0 {
		if len(errs) == 0 {
			errs = append(errs, "no valid meta page")
		}
		return boltMeta{}, "", fmt.Errorf("no readable bbolt header (%s)", errs[0])
	}
	best := metas[0]
	for _, m := range metas[1:] {
		if m.txid > best.txid {
			best = m
		}
	}
	problem := ""
	if len(errs) > 0 {
		problem = errs[0]
	}
	return best, problem, nil
}

// readPage reads page id and its overflow pages, checking that they lie
// inside the file and below the high-water mark and that the page names
// itself id with one of the wanted flags.
func (w *boltWalker) readPage(id uint64, wantFlags ...uint16) ([]byte, error) {
	ps := int64(w.meta.pageSize)
	if id < 2 || id >= w.meta.highPgid {
		return nil, fmt.Errorf("page %d is outside the database (high-water mark %d)", id, w.meta.highPgid)
	}
	page := w.buffer(int(ps))
	if _, err := w.r.ReadAt(page, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("page %d lies past the end of the file", id)
	}
	if got := ne.Uint64(page); got != id {
		return nil, fmt.Errorf("page %d is garbage (it calls itself page %d)", id, got)
	}
	flags := ne.Uint16(page[8:])
	ok := false
	for _, f := range wantFlags {
		ok = ok || flags == f
	}
	if !ok {
		return nil, fmt.Errorf("page %d is garbage (flags %#x)", id, flags)
	}
	overflow := uint64(ne.Uint32(page[12:]))
	if overflow == 0 {
		return page, nil
	}
	n := (1 + overflow) * uint64(ps)
	if id+overflow >= w.meta.highPgid || n > boltMaxPageBytes {
		return nil, fmt.Errorf("page %d is garbage (overflow %d)", id, overflow)
	}
	page = append(page, make([]byte, n-uint64(ps))...)
	if _, err := w.r.ReadAt(page[ps:], int64(id+1)*ps); err != nil {
		return nil, fmt.Errorf("page %d lies past the end of the file", id)
	}
	return page, nil
}

// buffer returns a page buffer of n bytes, reused when one is free.
func (w *boltWalker) buffer(n int) []byte {
	if k := len(w.free); k > 0 {
		b := w.free[k-1]
		w.free = w.free[:k-1]
		if cap(b) >= n {
			return b[:n]
		}
	}
	return make([]byte, n)
}

// release hands a page buffer back once nothing refers to its bytes.
func (w *boltWalker) release(b []byte) { w.free = append(w.free, b) }

// checkFreelist reads the freelist the way bbolt does when it opens the file.
func (w *boltWalker) checkFreelist() {
	if w.meta.freelist == boltNoFreelist {
		return
	}
	page, err := w.readPage(w.meta.freelist, boltFlagFreelist)
	if err != nil {
		w.problem("freelist: %v", err)
		return
	}
	count, at := uint64(ne.Uint16(page[10:])), uint64(boltHeaderSize)
	if count == 0xFFFF {
		count, at = ne.Uint64(page[boltHeaderSize:]), boltHeaderSize+8
	}
	if count > uint64(len(page)) || at+count*8 > uint64(len(page)) {
		w.problem("freelist page %d is garbage (%d ids)", w.meta.freelist, count)
		return
	}
	for i := range count {
		if id := ne.Uint64(page[at+i*8:]); id < 2 || id >= w.meta.highPgid {
			w.problem("freelist page %d is garbage (free page %d is outside the database)", w.meta.freelist, id)
			return
		}
	}
}

// walkBucket walks one bucket: from page root, or from its inline page when
// root is 0.
func (w *boltWalker) walkBucket(path []string, root uint64, inline []byte, depth int) {
	if depth > boltMaxDepth {
		w.problem("bucket %q: nested too deep", path)
		return
	}
	if root == 0 {
		if inline == nil {
			w.problem("bucket %q has no root page", path)
			return
		}
		var prev []byte
		w.walkLeaf(path, inline, -1, depth, &prev)
		return
	}
	var prev []byte
	w.walkPage(path, root, depth, &prev)
}

// walkPage walks the subtree at page id; prev is the last key seen in the
// bucket so far, to check that keys ascend across pages too.
func (w *boltWalker) walkPage(path []string, id uint64, depth int, prev *[]byte) {
	if depth > boltMaxDepth {
		w.problem("bucket %q: tree too deep at page %d", path, id)
		return
	}
	if w.seen[id] {
		w.problem("page %d is referenced twice", id)
		return
	}
	w.seen[id] = true
	page, err := w.readPage(id, boltFlagBranch, boltFlagLeaf)
	if err != nil {
		w.problem("bucket %q: %v", path, err)
		return
	}
	defer w.release(page)
	if ne.Uint16(page[8:]) == boltFlagLeaf {
		w.walkLeaf(path, page, int64(id), depth, prev)
		return
	}
	count := int(ne.Uint16(page[10:]))
	if boltHeaderSize+count*boltElemSize > len(page) {
		w.problem("bucket %q: branch page %d is garbage (%d elements)", path, id, count)
		return
	}
	for i := range count {
		e := boltHeaderSize + i*boltElemSize
		child := ne.Uint64(page[e+8:])
		w.walkPage(path, child, depth+1, prev)
	}
}

// walkLeaf reads a leaf page's records (id < 0: an inline page).
func (w *boltWalker) walkLeaf(path []string, page []byte, id int64, depth int, prev *[]byte) {
	where := fmt.Sprintf("page %d", id)
	if id < 0 {
		where = "inline page"
	}
	if len(page) < boltHeaderSize || ne.Uint16(page[8:]) != boltFlagLeaf {
		w.problem("bucket %q: %s is not a leaf page", path, where)
		return
	}
	count := int(ne.Uint16(page[10:]))
	if boltHeaderSize+count*boltElemSize > len(page) {
		w.problem("bucket %q: %s is garbage (%d elements)", path, where, count)
		return
	}
	for i := range count {
		e := boltHeaderSize + i*boltElemSize
		flags := ne.Uint32(page[e:])
		pos, ks, vs := uint64(ne.Uint32(page[e+4:])), uint64(ne.Uint32(page[e+8:])), uint64(ne.Uint32(page[e+12:]))
		start := uint64(e) + pos
		if start+ks+vs > uint64(len(page)) || ks == 0 {
			w.problem("bucket %q: %s: record %d lies outside its page", path, where, i)
			continue
		}
		k, v := page[start:start+ks], page[start+ks:start+ks+vs]
		if *prev != nil && bytes.Compare(*prev, k) >= 0 {
			w.problem("bucket %q: %s: keys out of order", path, where)
		}
		*prev = append((*prev)[:0], k...) // the page's buffer is reused
		if flags&boltBucketLeaf == 0 {
			if w.visit != nil {
				w.visit.record(path, k, v)
			}
			continue
		}
		if len(v) < 16 {
			w.problem("bucket %q: %s: sub-bucket %q has a short header", path, where, k)
			continue
		}
		sub := append(append([]string(nil), path...), string(k))
		if w.visit != nil {
			w.visit.bucket(sub, ne.Uint64(v[8:]))
		}
		root := ne.Uint64(v[0:])
		var inline []byte
		if root == 0 {
			inline = v[16:]
		}
		w.walkBucket(sub, root, inline, depth+1)
	}
}
