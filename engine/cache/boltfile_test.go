package cache

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
)

// This file reads index.db's raw pages so tests can damage chosen parts of
// it. It knows bbolt's on-disk layout: a 16-byte page header (id, flags,
// count, overflow) and two meta pages at the front.
const (
	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageMeta     = 0x04
	pageFreelist = 0x10
)

type boltPage struct {
	id       int64
	flags    uint16
	overflow int64 // extra pages that follow, part of this one
}

type boltFile struct {
	data     []byte
	pageSize int64
	freelist int64 // page id of the freelist in the newest meta
	pages    []boltPage
}

func readBoltFile(t testing.TB, path string) *boltFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 4096*2 {
		t.Fatalf("%s is only %d bytes", path, len(b))
	}
	f := &boltFile{data: b, pageSize: int64(binary.LittleEndian.Uint32(b[24:]))}
	// The newer of the two metas (by txid) is in force.
	var bestTx uint64
	for i := range int64(2) {
		m := b[i*f.pageSize:]
		if tx := binary.LittleEndian.Uint64(m[64:]); i == 0 || tx > bestTx {
			bestTx, f.freelist = tx, int64(binary.LittleEndian.Uint64(m[48:]))
		}
	}
	for id := int64(0); id*f.pageSize < int64(len(b)); {
		h := b[id*f.pageSize:]
		p := boltPage{id: id, flags: binary.LittleEndian.Uint16(h[8:]), overflow: int64(binary.LittleEndian.Uint32(h[12:]))}
		switch p.flags {
		case pageBranch, pageLeaf, pageMeta, pageFreelist:
			if int64(binary.LittleEndian.Uint64(h)) == id {
				f.pages = append(f.pages, p)
				id += 1 + p.overflow
				continue
			}
		}
		id++
	}
	return f
}

// pagesOf returns the pages with any of the given flags.
func (f *boltFile) pagesOf(flags uint16) []boltPage {
	var out []boltPage
	for _, p := range f.pages {
		if p.flags&flags != 0 {
			out = append(out, p)
		}
	}
	return out
}

// pageHolding returns the live leaf page (with its overflow) whose bytes
// contain pattern. bbolt writes changed pages at new places and does not
// clear the old ones, so a freed page may still hold an old copy; only a page
// reachable from the newest meta's root is the one a read goes to.
func (f *boltFile) pageHolding(t testing.TB, pattern []byte) boltPage {
	t.Helper()
	live := f.liveLeaves(t)
	for from := 0; ; {
		i := bytes.Index(f.data[from:], pattern)
		if i < 0 {
			break
		}
		off := int64(from + i)
		for _, p := range f.pages {
			if live[p.id] && off >= p.id*f.pageSize && off < (p.id+1+p.overflow)*f.pageSize {
				return p
			}
		}
		from += i + 1
	}
	t.Fatal("no live leaf page holds the pattern")
	return boltPage{}
}

// liveLeaves walks the tree from the newest meta's root bucket, through
// nested buckets, and returns the ids of the leaf pages it reaches.
func (f *boltFile) liveLeaves(t testing.TB) map[int64]bool {
	t.Helper()
	var root int64
	var bestTx uint64
	for i := range int64(2) {
		m := f.data[i*f.pageSize:]
		if tx := binary.LittleEndian.Uint64(m[64:]); i == 0 || tx > bestTx {
			bestTx, root = tx, int64(binary.LittleEndian.Uint64(m[32:]))
		}
	}
	leaves := map[int64]bool{}
	seen := map[int64]bool{}
	var walk func(id int64)
	// inline walks a leaf page embedded in a bucket's value (a small
	// bucket): its nested buckets may still have pages of their own.
	var leafElems func(page []byte)
	leafElems = func(page []byte) {
		n := int(binary.LittleEndian.Uint16(page[10:]))
		for i := range n {
			e := page[16+16*i:]
			flags := binary.LittleEndian.Uint32(e)
			pos := binary.LittleEndian.Uint32(e[4:])
			ksize := binary.LittleEndian.Uint32(e[8:])
			vsize := binary.LittleEndian.Uint32(e[12:])
			if flags&0x01 == 0 { // not a bucket
				continue
			}
			start := 16 + 16*i + int(pos) + int(ksize)
			v := page[start : start+int(vsize)]
			if r := int64(binary.LittleEndian.Uint64(v)); r != 0 {
				walk(r)
			} else {
				leafElems(v[16:]) // the inline page follows the bucket header
			}
		}
	}
	walk = func(id int64) {
		if seen[id] || id*f.pageSize >= int64(len(f.data)) {
			return
		}
		seen[id] = true
		page := f.data[id*f.pageSize:]
		switch binary.LittleEndian.Uint16(page[8:]) {
		case pageBranch:
			n := int(binary.LittleEndian.Uint16(page[10:]))
			for i := range n {
				walk(int64(binary.LittleEndian.Uint64(page[16+16*i+8:])))
			}
		case pageLeaf:
			leaves[id] = true
			leafElems(page)
		}
	}
	walk(root)
	if len(leaves) == 0 {
		t.Fatal("no live leaf pages found from the meta's root")
	}
	return leaves
}

// garbage returns n deterministic random bytes.
func garbage(seed uint64, n int64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// overwritePage writes garbage over the first page (the header) of p.
func overwritePage(t testing.TB, path string, pageSize int64, id int64, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(garbage(seed, pageSize), id*pageSize); err != nil {
		t.Fatal(err)
	}
}

// flipAll flips one byte (at offset at within the pattern) in every copy of
// pattern in path. Stale copies in freed pages are flipped too, so whichever
// copy the index uses is damaged. It returns how many copies there were.
func flipAll(t testing.TB, path string, pattern []byte, at int) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], pattern)
		if j < 0 {
			break
		}
		b[i+j+at] ^= 0x5a
		n++
		i += j + len(pattern)
	}
	if n == 0 {
		t.Fatalf("pattern not found in %s", path)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}
