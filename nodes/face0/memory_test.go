package face0

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPluginMemoryFlat runs the whole pipeline 50 times in one plugin
// process and compares its memory late (runs 41-50) with early (runs 5-14,
// when models are loaded and arenas sized): a leak per run, in Go or in
// onnxruntime, would grow it.
//
// The memory is the process's RSS less the pages the Go heap holds free for
// reuse (the sampler's log line reports them): those make RSS a sawtooth of
// several MiB on this ~62 MiB process as garbage comes and goes, and by run
// 50 the Go heap typically keeps ~3 MiB more such pages than at run 5, with
// live objects flat at 4-5.5 MiB. Leaked Go objects, or leaked C++ memory in
// onnxruntime, are not free pages and still count. Each side is the lowest
// of ten readings. Raw RSS is logged too.
func TestPluginMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("50 runs; skipped with -short")
	}
	r := newRig(t, modelsDir)
	w := graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": tinyModel, "text": "a photo of a person"}},
		node{"face", "RandomEmbedding", map[string]any{"model": tinyModel, "seed": 3}},
		node{"sampler", "Face0Sampler", map[string]any{"model": tinyModel, "positive": link("prompt", "CONDITIONING"),
			"face_embedding": link("face", "embedding"), "seed": 1, "steps": 10, "c": 0.5, "a": 0.5, "width": 64, "height": 64}},
		node{"decode", "Decode", map[string]any{"model": tinyModel, "latent": link("sampler", "LATENT")}},
	)
	var pid int
	rss, used := []int64{0}, []int64{0} // after run i: VmRSS, and VmRSS less the Go heap's free pages
	for i := 1; i <= 50; i++ {
		res, rec, err := r.run(context.Background(), t, w, "decode")
		if err != nil || len(res.Failed) > 0 {
			t.Fatalf("run %d: %v %v", i, err, res.Failed)
		}
		line := samplerLog(rec)
		_, _, _, p := parseLog(t, line)
		if pid != 0 && p != pid {
			t.Fatalf("the plugin process changed from %d to %d (it crashed?)", pid, p)
		}
		pid = p
		free, _ := strconv.ParseInt(logRE.FindStringSubmatch(line)[8], 10, 64)
		v := statusKB(t, pid, "VmRSS")
		rss, used = append(rss, v), append(used, v-free)
	}
	early, late := slices.Min(used[5:15]), slices.Min(used[41:51])
	growth := float64(late-early) / float64(early)
	t.Logf("plugin RSS: run 5 %d KiB, run 50 %d KiB (%+.2f%%); less Go's free heap, lowest of runs 5-14 %d KiB, of runs 41-50 %d KiB (%+.2f%%)",
		rss[5], rss[50], 100*float64(rss[50]-rss[5])/float64(rss[5]), early, late, 100*growth)
	if growth > 0.05 {
		t.Errorf("plugin memory grew %.1f%% from runs 5-14 to runs 41-50 (%d → %d KiB)", 100*growth, early, late)
	}
}

// statusKB reads a memory field (VmRSS, RssAnon...) of a process from
// /proc/PID/status.
func statusKB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("cannot read the plugin's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
