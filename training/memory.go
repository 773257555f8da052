package training

import (
	"bufio"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// SoftMemoryLimit sets the Go runtime's soft memory limit to frac of this
// machine's memory (its cgroup's limit when lower), unless GOMEMLIMIT is
// set, and returns the limit (0: unknown, unchanged). A full-size run's
// tensors live on the Go heap (GoMLX's pure-Go backend), and with the
// default GC pacing (collect when the heap doubles) the garbage of one step
// could grow as large as the live weights and optimizer state themselves;
// near the limit the GC collects sooner instead.
func SoftMemoryLimit(frac float64) int64 {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return 0
	}
	total := machineMemory()
	if total <= 0 {
		return 0
	}
	limit := int64(float64(total) * frac)
	debug.SetMemoryLimit(limit)
	return limit
}

// machineMemory is MemTotal from /proc/meminfo, or the cgroup v2 limit
// when that is lower; 0 when neither is readable.
func machineMemory() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fs := strings.Fields(rest)
				if len(fs) >= 1 {
					kb, _ := strconv.ParseInt(fs[0], 10, 64)
					total = kb << 10
				}
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) && v < math.MaxInt64/2 {
			total = v
		}
	}
	return total
}
