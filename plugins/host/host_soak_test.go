//go:build soak

package host_test

import (
	"os"
	"testing"
	"time"
)

// soakTime is how long each soak scenario runs: FACE0_SOAK_TIME (a Go
// duration), default two minutes.
func soakTime(t *testing.T) time.Duration {
	if s := os.Getenv("FACE0_SOAK_TIME"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("FACE0_SOAK_TIME=%q: %v", s, err)
		}
		return d
	}
	return 2 * time.Minute
}

// TestSoakKill9 kills plugin processes with SIGKILL at random moments under a
// running engine for minutes (see kill9Rounds).
func TestSoakKill9(t *testing.T) { kill9Rounds(t, soakTime(t), 20) }

// TestSoakInterrupt interrupts nodes that ignore cancellation beside other
// prompts' nodes for minutes (see interruptRounds).
func TestSoakInterrupt(t *testing.T) { interruptRounds(t, soakTime(t), 20) }
