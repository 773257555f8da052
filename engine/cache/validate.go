package cache

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"syscall"
)

// bbolt trusts index.db's page headers: a garbage overflow count makes a
// commit free billions of page ids (memory grows until the process is
// killed), a child pointer back to an ancestor makes a lookup descend
// forever, a garbage element offset reads outside the mapping. Neither its
// consistency check (which loops over the same counts, on a goroutine of its
// own) nor a recover can help with these. So before bbolt walks the tree (at
// Open, and before a commit when index.db changed behind the store's back)
// validateIndex walks it itself, through a mapping of its own inside guard,
// and checks every number bbolt would follow: page ids, types, overflow
// counts, element counts and offsets, bucket roots and the freelist. Before
// every other commit it checks the metas and the freelist page: the one page
// every commit frees, whatever it changes; a change by someone else within
// the file system's timestamp granularity leaves no other trace.
//
// The layout read here is bbolt's file format version 2, unchanged since 2014:
// a page is a 16-byte header (id u64, flags u16, count u16, overflow u32) and
// elements; pages 0 and 1 are metas.

const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeader       = 16
	elemSize         = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	flagBucketLeaf   = 0x01 // leaf element holding a bucket
	pgidNoFreelist   = ^uint64(0)
	metaChecksumSpan = 56 // meta bytes covered by its checksum
)

// boltMeta is what validation needs of the meta page in force.
type boltMeta struct {
	root, freelist, hwm, txid uint64
}

// validateIndex checks the index.db at path, whose pages are pageSize bytes:
// the whole tree and the freelist when full, else only the metas and the
// freelist page, which every commit frees using its header.
func validateIndex(path string, pageSize int, full bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < int64(2*pageSize) {
		return &damageError{what: fmt.Sprintf("the file is %d bytes, shorter than its two meta pages", fi.Size())}
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", path, err)
	}
	defer syscall.Munmap(data)
	return guard("validating", func() error {
		v := &pageWalker{data: data, ps: uint64(pageSize)}
		return v.walk(full)
	})
}

type pageWalker struct {
	data []byte
	ps   uint64
	hwm  uint64 // pages below this are in use or free
	seen []bool // pages already claimed by the tree or the freelist
}

func (v *pageWalker) walk(full bool) error {
	m, err := v.meta()
	if err != nil {
		return err
	}
	if m.hwm*v.ps > uint64(len(v.data)) {
		return &damageError{what: fmt.Sprintf("the file is truncated: %d bytes, its index needs %d", len(v.data), m.hwm*v.ps)}
	}
	v.hwm = m.hwm
	v.seen = make([]bool, m.hwm)
	v.seen[0], v.seen[1] = true, true
	if full {
		if err := v.node(m.root, 0); err != nil {
			return err
		}
	}
	return v.freelist(m.freelist)
}

// meta returns the meta page bbolt uses: the valid one with the higher
// transaction id.
func (v *pageWalker) meta() (boltMeta, error) {
	var best boltMeta
	found := false
	for i := range uint64(2) {
		p := v.data[i*v.ps:]
		m := p[pageHeader:]
		le := binary.LittleEndian
		h := fnv.New64a()
		h.Write(m[:metaChecksumSpan])
		if le.Uint32(m) != boltMagic || le.Uint32(m[4:]) != boltVersion || uint64(le.Uint32(m[8:])) != v.ps ||
			h.Sum64() != le.Uint64(m[metaChecksumSpan:]) {
			continue
		}
		cur := boltMeta{root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
		if !found || cur.txid > best.txid {
			best, found = cur, true
		}
	}
	if !found {
		return best, &damageError{what: "both meta pages are invalid"}
	}
	return best, nil
}

// page checks page id's header and claims its pages, returning its bytes
// (the page and its overflow) and element count.
func (v *pageWalker) page(id uint64, wantFlags ...uint16) (run []byte, flags uint16, count int, err error) {
	le := binary.LittleEndian
	if id < 2 || id >= v.hwm {
		return nil, 0, 0, &damageError{what: fmt.Sprintf("page id %d is outside the index (2..%d)", id, v.hwm)}
	}
	if v.seen[id] {
		return nil, 0, 0, &damageError{what: fmt.Sprintf("page %d is referenced twice", id)}
	}
	h := v.data[id*v.ps:]
	flags, count = le.Uint16(h[8:]), int(le.Uint16(h[10:]))
	overflow := uint64(le.Uint32(h[12:]))
	ok := false
	for _, f := range wantFlags {
		ok = ok || flags == f
	}
	switch {
	case le.Uint64(h) != id:
		return nil, 0, 0, &damageError{what: fmt.Sprintf("page %d says it is page %d", id, le.Uint64(h))}
	case !ok:
		return nil, 0, 0, &damageError{what: fmt.Sprintf("page %d has unexpected type %#x", id, flags)}
	case id+overflow >= v.hwm:
		return nil, 0, 0, &damageError{what: fmt.Sprintf("page %d claims %d overflow pages, past the end of the index", id, overflow)}
	}
	for i := id; i <= id+overflow; i++ {
		if v.seen[i] {
			return nil, 0, 0, &damageError{what: fmt.Sprintf("page %d overlaps page %d", id, i)}
		}
		v.seen[i] = true
	}
	return h[:(overflow+1)*v.ps], flags, count, nil
}

// node checks a bucket's tree from page id down.
func (v *pageWalker) node(id uint64, depth int) error {
	if depth > 64 {
		return &damageError{what: "the index tree is impossibly deep"}
	}
	run, flags, count, err := v.page(id, flagBranch, flagLeaf)
	if err != nil {
		return err
	}
	if flags == flagBranch {
		return v.elements(run, count, id, func(_ uint32, _, _ []byte, child uint64) error {
			return v.node(child, depth+1)
		})
	}
	return v.leaf(run, count, id, depth)
}

// leaf checks a leaf's elements and the buckets it holds.
func (v *pageWalker) leaf(run []byte, count int, id uint64, depth int) error {
	return v.elements(run, count, id, func(flags uint32, _, val []byte, _ uint64) error {
		if flags&flagBucketLeaf == 0 {
			return nil
		}
		if len(val) < 16 {
			return &damageError{what: fmt.Sprintf("page %d holds a bucket header of %d bytes", id, len(val))}
		}
		if root := binary.LittleEndian.Uint64(val); root != 0 {
			return v.node(root, depth+1)
		}
		// An inline bucket: a leaf page stored in the value itself.
		inline := val[16:]
		if len(inline) < pageHeader || binary.LittleEndian.Uint16(inline[8:]) != flagLeaf {
			return &damageError{what: fmt.Sprintf("page %d holds a malformed inline bucket", id)}
		}
		return v.leaf(inline, int(binary.LittleEndian.Uint16(inline[10:])), id, depth+1)
	})
}

// elements checks that every element of a branch or leaf page, with its key
// and value, lies inside run, and calls fn for each.
func (v *pageWalker) elements(run []byte, count int, id uint64, fn func(flags uint32, key, val []byte, child uint64) error) error {
	le := binary.LittleEndian
	isBranch := le.Uint16(run[8:]) == flagBranch
	if pageHeader+count*elemSize > len(run) {
		return &damageError{what: fmt.Sprintf("page %d claims %d elements, more than fit", id, count)}
	}
	for i := range count {
		e := run[pageHeader+i*elemSize:]
		var flags uint32
		var pos, ksize, vsize uint64
		var child uint64
		if isBranch {
			pos, ksize, child = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
		} else {
			flags, pos, ksize, vsize = le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		start := uint64(pageHeader+i*elemSize) + pos
		if ksize == 0 || start+ksize+vsize > uint64(len(run)) {
			return &damageError{what: fmt.Sprintf("page %d element %d points outside the page", id, i)}
		}
		if err := fn(flags, run[start:start+ksize], run[start+ksize:start+ksize+vsize], child); err != nil {
			return err
		}
	}
	return nil
}

// freelist checks the freelist page and that every page it lists is in the
// index and not in use: bbolt would otherwise hand out a live page.
func (v *pageWalker) freelist(id uint64) error {
	if id == pgidNoFreelist {
		return nil
	}
	run, _, count, err := v.page(id, flagFreelist)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	idx := uint64(0)
	n := uint64(count)
	if count == 0xFFFF { // the real count is the first element
		n, idx = le.Uint64(run[pageHeader:]), 1
	}
	if n > uint64(len(run))/8 || pageHeader+(idx+n)*8 > uint64(len(run)) {
		return &damageError{what: fmt.Sprintf("freelist page %d claims %d entries, more than fit", id, n)}
	}
	for i := range n {
		free := le.Uint64(run[pageHeader+(idx+i)*8:])
		if free < 2 || free >= v.hwm || v.seen[free] {
			return &damageError{what: fmt.Sprintf("freelist lists page %d, which is in use or outside the index", free)}
		}
		v.seen[free] = true
	}
	return nil
}
