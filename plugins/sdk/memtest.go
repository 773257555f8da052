//go:build face0memtest

package sdk

// A plugin built with the tag face0memtest reports its memory after each node,
// and can leak on purpose, so that the leak tests (nodes/face0's
// TestPluginMemoryFlat) measure the plugin process exactly and can show that
// a real leak fails them. Release builds have none of this.
//
// FACE0_TEST_MEMSTATS=T turns the report on: after each node of type T the
// process collects its garbage, returns free pages to the system and logs
//
//	sdk memstats: node T go_live B go_resident B rss_anon B
//
// (bytes): the Go heap's live objects, the memory the Go runtime holds, and
// the process's anonymous resident memory (Go's plus C's: onnxruntime).
// FACE0_TEST_LEAK_KB=K with FACE0_TEST_LEAK_NODE=T leaks K KiB after each
// node of type T, in the Go heap or, with FACE0_TEST_LEAK_KIND=c, outside it
// (an anonymous mapping, as a C allocator's leak would be).

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

var leaked [][]byte

func init() {
	measured := os.Getenv("FACE0_TEST_MEMSTATS")
	if measured == "" {
		return
	}
	leakKB, _ := strconv.Atoi(os.Getenv("FACE0_TEST_LEAK_KB"))
	leakNode, leakKind := os.Getenv("FACE0_TEST_LEAK_NODE"), os.Getenv("FACE0_TEST_LEAK_KIND")
	afterExecute = func(ctx *Context, nodeType string) {
		if leakKB > 0 && nodeType == leakNode {
			leak(leakKB<<10, leakKind == "c")
		}
		if nodeType != measured {
			return
		}
		debug.FreeOSMemory() // a full collection, then free pages back to the system
		s := []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
		}
		metrics.Read(s)
		live, total, released := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
		ctx.Logf("sdk memstats: node %s go_live %d go_resident %d rss_anon %d", nodeType, live, total-released, rssAnon())
	}
}

// leak keeps n bytes for good, touched so that they are resident.
func leak(n int, outsideGo bool) {
	var b []byte
	if outsideGo {
		m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			panic(err)
		}
		b = m
	} else {
		b = make([]byte, n)
	}
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	leaked = append(leaked, b)
	runtime.KeepAlive(b)
}

// rssAnon is the process's RssAnon in bytes (0 if unknown).
func rssAnon() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
