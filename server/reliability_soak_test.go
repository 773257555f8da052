//go:build soak

package server

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The soak tests run real `face0 serve` processes for minutes: make soak
// (go test -tags soak -run Soak ./...). FACE0_SOAK_SECONDS sets each test's
// length (default 150) and FACE0_SOAK_SEED replays a run (each run logs its seed).

func soakBudget(t *testing.T) (time.Duration, *rand.Rand) {
	secs := 150
	if v, err := strconv.Atoi(os.Getenv("FACE0_SOAK_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("FACE0_SOAK_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("FACE0_SOAK_SEED=%d FACE0_SOAK_SECONDS=%d", seed, secs)
	return time.Duration(secs) * time.Second, rand.New(rand.NewPCG(seed, 0))
}

// TestSoakServerDBCorruption starts a real server over copies of one
// server.db damaged in many ways (truncated at every half page, random bytes
// flipped, pages overwritten or zeroed) and holds every start to
// checkOutcome's rules: never a Go trace; a refusal names the file and the
// remedy; what is served was there, and anything lost is reported with the
// damaged copy kept.
func TestSoakServerDBCorruption(t *testing.T) {
	budget, rng := soakBudget(t)
	base := t.TempDir()
	fx := makeDB(t, base, 40, 5)
	pristine, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	used := dbSize(t, fx.path)      // the bytes below the high-water mark
	page := int64(os.Getpagesize()) // bbolt's page size
	var truncations []int64
	for off := int64(0); off < used; off += page / 2 {
		truncations = append(truncations, off)
	}
	damages := []struct {
		name  string
		apply func(path string) string
	}{
		{"truncate", func(path string) string {
			off := rng.Int64N(used)
			if len(truncations) > 0 {
				off, truncations = truncations[0], truncations[1:]
			}
			must(t, os.Truncate(path, off))
			return fmt.Sprintf("truncated at %d", off)
		}},
		{"flip", func(path string) string {
			n := 1 + rng.IntN(8)
			var offs []int64
			for range n {
				off := rng.Int64N(used)
				offs = append(offs, off)
				b := readAt(t, path, off, 1)
				b[0] ^= byte(1 + rng.IntN(255))
				writeAt(t, path, off, b)
			}
			return fmt.Sprintf("flipped bytes at %v", offs)
		}},
		{"scribble", func(path string) string {
			id := rng.Int64N(used / page)
			scribble(t, path, id*page, page)
			return fmt.Sprintf("page %d overwritten", id)
		}},
		{"zero", func(path string) string {
			id := rng.Int64N(used / page)
			writeAt(t, path, id*page, make([]byte, page))
			return fmt.Sprintf("page %d zeroed", id)
		}},
	}
	tally := map[string]int{}
	deadline := time.Now().Add(budget)
	for i := 0; time.Now().Before(deadline); i++ {
		d := damages[i%len(damages)]
		home := t.TempDir()
		copyFx := &dbFixture{path: filepath.Join(home, "server.db"), history: fx.history, queued: fx.queued}
		must(t, os.WriteFile(copyFx.path, pristine, 0o600))
		what := d.apply(copyFx.path)
		ok := t.Run(fmt.Sprintf("%03d_%s", i, d.name), func(t *testing.T) {
			p := startProc(t, home)
			served, kept := checkOutcome(t, p, copyFx)
			switch {
			case !served:
				tally["refused"]++
			case kept == len(fx.history)+len(fx.queued):
				tally["kept everything"]++
			default:
				tally["salvaged part"]++
			}
			if strings.Contains(p.log(), "was damaged") {
				tally["reported damage"]++
			}
			if served {
				p.stop(t)
			}
		})
		if !ok {
			t.Fatalf("case %d (%s) failed; the damaged file is %s", i, what, copyFx.path)
		}
		tally["cases"]++
	}
	t.Logf("outcomes: %v", tally)
}

// TestSoakKill9 kills a real server with kill -9 (its plugins with it) at
// random moments while it runs a queue of prompts, restarts it, and at the
// end checks that every accepted prompt finished exactly once: successfully,
// or failed by the attempt limit, with its reason. The database must never
// need a salvage after a kill.
func TestSoakKill9(t *testing.T) {
	budget, rng := soakBudget(t)
	home := newHome(t)
	plugHome(t, home)
	submitted := map[string]bool{}
	deadline := time.Now().Add(budget)
	rounds := 0
	for ; time.Now().Before(deadline); rounds++ {
		p := startProc(t, home)
		if p.url == "" {
			t.Fatalf("round %d: no server:\n%s", rounds, p.log())
		}
		for range 1 + rng.IntN(3) {
			prompt := slowPrompt(1+rng.IntN(20), rng.IntN(80), rng.IntN(4) == 0)
			submitted[submit(t, p.url, map[string]any{"prompt": prompt})] = true
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		p.kill9()
		log := p.log()
		assertNoTrace(t, fmt.Sprintf("round %d", rounds), log)
		if strings.Contains(log, "damaged") {
			t.Fatalf("round %d: the database was damaged after a kill -9:\n%s", rounds, log)
		}
	}
	p := startProc(t, home)
	if p.url == "" {
		t.Fatalf("last start: %s", p.log())
	}
	// The queue left by the rounds drains first (a hang guard, not a speed
	// check: a few minutes of prompts may be waiting).
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		_, q := call(t, "GET", p.url+"/queue", nil)
		if len(q["queue_running"].([]any))+len(q["queue_pending"].([]any)) == 0 {
			break
		}
		if time.Since(start) > 20*time.Minute {
			t.Fatalf("the queue never drained: %v", q)
		}
	}
	gaveUp := 0
	for id := range submitted {
		st := waitHistory(t, p.url, id)["status"].(map[string]any)
		if st["status_str"] == "success" {
			continue
		}
		if !strings.Contains(fmt.Sprint(st["messages"]), "crashed or was killed") {
			t.Errorf("prompt %s failed: %v", id, st)
		}
		gaveUp++
	}
	_, h := call(t, "GET", p.url+"/history", nil)
	for id := range h {
		if !submitted[id] {
			t.Errorf("history has %s, never submitted", id)
		}
	}
	if len(h) != len(submitted) {
		t.Errorf("history has %d entries for %d prompts", len(h), len(submitted))
	}
	assertNoTrace(t, "last start", p.log())
	if strings.Contains(p.log(), "damaged") {
		t.Errorf("the database was damaged after the last kill -9:\n%s", p.log())
	}
	t.Logf("%d kill -9 rounds, %d prompts, %d given up after %d attempts", rounds, len(submitted), gaveUp, DefaultMaxAttempts)
	p.stop(t)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	must(t, err)
	return b
}

func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	must(t, err)
}
