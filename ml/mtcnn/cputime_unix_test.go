//go:build unix

package mtcnn

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time. Benchmarks report it
// beside wall time because the development machine is shared: wall time
// then measures the neighbours too, CPU time only this work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
