package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/config"
	"github.com/face0/face0/internal/testplugin/testnodes"
	"github.com/face0/face0/plugins/sdk"
)

// hiddenPacks are served by `face0 plugin NAME` but never started by run or
// serve. The bench pack is compiled in so that `face0 bench` needs no Go
// toolchain and measures the same binary a user runs.
var hiddenPacks = map[string]func() sdk.Pack{
	"bench": func() sdk.Pack { return testnodes.Bench(config.Version) },
}

// before are the figures of issue 13, measured end to end on the development
// machine before zero-copy tensors and the background cache (face0 and
// ComfyUI's own engine on the same graphs), printed for reference.
var before = map[string]string{
	"chain100":        "326 ms (ComfyUI 674)",
	"chain100-nc":     "52 ms",
	"chain100-cached": "12 ms (ComfyUI 422)",
	"tensor":          "969 ms (ComfyUI 34)",
	"tensor-nc":       "602 ms",
}

func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	runs := fs.Int("runs", 20, "runs per figure (medians are printed)")
	tensorRuns := fs.Int("tensor-runs", 20, "runs of the tensor chains (each writes 10 tensors to the cache)")
	wfRuns := fs.Int("workflow-runs", 5, "runs of the default Face0 workflow (0 skips it)")
	mb := fs.Int("mb", 16, "tensor size in MiB")
	models := fs.String("models", "", "folder holding the shipped model face0-synthfaces (default ./models if present, else $FACE0_MODELS)")
	workflowFile := fs.String("workflow", filepath.Join("examples", "workflows", "face0-default.json"), "the default Face0 workflow")
	inputImage := fs.String("input-image", filepath.Join("examples", "inputs", "synthface.png"), "the image the default workflow loads")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this process (server, engine, host) to FILE")
	keep := fs.Bool("keep", false, "keep the temporary HOME folders")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, `usage: face0 bench [flags]

Measures the engine end to end, as ComfyUI is measured (POST /prompt until the
websocket says "executing" with node null), on a face0 server started inside
this process with a hidden trivial pack. Each run starts once the cache's
background writes of the one before are done:
  - a chain of 100 trivial nodes, first run with the cache against --no-cache,
    and fully cached;
  - a chain of 10 nodes passing a tensor of --mb MiB, per hop against a plain
    memory copy of the same size measured in the same run;
  - the default Face0 workflow on the shipped model.`)
		fs.PrintDefaults()
	}
	if pos, err := parseInterleaved(fs, args); err != nil {
		return err // the flag package has printed the usage
	} else if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "face0 bench: unexpected argument %q\n", pos[0])
		fs.Usage()
		return exitCode(2)
	}
	if *models == "" {
		if st, err := os.Stat("models"); err == nil && st.IsDir() {
			*models, _ = filepath.Abs("models")
		} else {
			*models = os.Getenv("FACE0_MODELS")
		}
	}
	root, err := os.MkdirTemp("", "face0-bench-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "face0 bench: HOME folders under", root)
	} else {
		defer os.RemoveAll(root)
	}
	withFace0 := *wfRuns > 0
	builtins := []string{}
	if withFace0 {
		builtins = []string{"image", "face", "face0"}
	}
	fmt.Fprintln(os.Stderr, "face0 bench: starting two servers (with the cache and with --no-cache)...")
	cached, err := startBenchServer("cache", benchServerOptions{home: filepath.Join(root, "cache"), models: *models, builtins: builtins})
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer cached.close()
	nocache, err := startBenchServer("no-cache", benchServerOptions{home: filepath.Join(root, "nocache"), models: *models, noCache: true, builtins: builtins})
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer nocache.close()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	t := &benchTable{}
	size := *mb << 20
	cp := newMemcpy(size)

	// A trivial node: one engine run of one node, no cache.
	trivial, err := sample(max(200, *runs*10), func(i int) (time.Duration, error) {
		return nocache.runEngine(fmt.Sprintf(`{"version":1,"nodes":[{"id":"a","type":"Add","inputs":{"a":%d,"b":2}}]}`, i))
	})
	if err != nil {
		return benchFailed("trivial node", nocache, err)
	}
	t.add("trivial node round trip (engine run, 1 node)", trivial.median(), 0, "<= 0.5 ms", "")

	// 100 trivial nodes: a new first literal makes every run a first run.
	chain := func(i int) apiPrompt {
		return chainPrompt(100, "Const", map[string]any{"value": 100000 + i}, "Add", "a", map[string]any{"b": 1})
	}
	if _, err := cached.run(chain(-1)); err != nil {
		return benchFailed("100-node chain", cached, err)
	}
	c100, err := interleaved(*runs,
		func(i int) (time.Duration, error) { return nocache.run(chain(i)) },
		func(i int) (time.Duration, error) { return cached.run(chain(i)) },
		func(int) (time.Duration, error) { return cached.run(chain(-1)) },
	)
	if err != nil {
		return fmt.Errorf("100-node chain: %w", err)
	}
	t.add("100-node chain, first run, --no-cache", c100[0].median(), 0, "", before["chain100-nc"])
	t.add("100-node chain, first run, with the cache", c100[1].median(), c100[0].median(), "<= 1.2x --no-cache", before["chain100"])
	t.add("100-node chain, fully cached re-run", c100[2].median(), 0, "<= 15 ms", before["chain100-cached"])

	// Tensor chains: MakeTensor then nodes that pass the tensor on (the bar),
	// or that each return a new copy of it (a node computing a fresh result
	// of the same size). A hop's cost is the difference between a chain of 10
	// and a chain of 2, per extra node: making the tensor and the end of the
	// run cancel out. The memcpy baseline is measured in the same rounds.
	tensorChain := func(next string, n, i int) apiPrompt {
		return chainPrompt(n, "MakeTensor", map[string]any{"mb": *mb, "fill": 1 + i, "ramp": true}, next, "latent", nil)
	}
	var drains samples
	tensors, err := interleaved(*tensorRuns,
		func(i int) (time.Duration, error) { return nocache.run(tensorChain("PassTensor", 10, i)) },
		func(i int) (time.Duration, error) { return nocache.run(tensorChain("PassTensor", 2, i)) },
		func(i int) (time.Duration, error) {
			d, err := cached.run(tensorChain("PassTensor", 10, i))
			drains = append(drains, cached.drain)
			return d, err
		},
		func(i int) (time.Duration, error) { return nocache.run(tensorChain("CopyTensor", 10, i)) },
		func(i int) (time.Duration, error) { return nocache.run(tensorChain("CopyTensor", 2, i)) },
		func(int) (time.Duration, error) { return cp.measure(), nil },
	)
	if err != nil {
		return fmt.Errorf("tensor chain: %w", err)
	}
	passNC, pass2NC, pass, copyNC, copy2NC := tensors[0], tensors[1], tensors[2], tensors[3], tensors[4]
	copyTime := tensors[5].median()
	t.add(fmt.Sprintf("memcpy of %d MiB", *mb), copyTime, 0, "baseline", "")
	t.add(fmt.Sprintf("10-node chain passing %d MiB, --no-cache", *mb), passNC.median(), 0, "", before["tensor-nc"])
	t.add(fmt.Sprintf("10-node chain passing %d MiB, with the cache", *mb), pass.median(), passNC.median(), "<= 1.2x --no-cache", before["tensor"])
	t.add("  the cache's background writes after that run", drains.median(), 0, "(not waited for)", "")
	t.add(fmt.Sprintf("  per hop, %d MiB passed on (vs memcpy)", *mb), perStep(passNC, pass2NC, 8), copyTime, "<= 2x memcpy", "")
	t.add(fmt.Sprintf("  per hop, %d MiB copied by each node (vs memcpy)", *mb), perStep(copyNC, copy2NC, 8), copyTime, "", "")

	if withFace0 {
		if err := benchWorkflow(t, cached, nocache, *workflowFile, *inputImage, *wfRuns); err != nil {
			if !errors.Is(err, errSkip) {
				return err
			}
			t.note("default Face0 workflow: " + err.Error())
		}
	}
	t.print(os.Stdout)
	return nil
}

// benchWorkflow measures the default Face0 workflow: first runs (a new seed
// and prompt each time; the image and face nodes come from the cache after
// the first) with and without the cache, and the fully cached re-run.
func benchWorkflow(t *benchTable, cached, nocache *benchServer, file, image string, runs int) error {
	if _, err := os.Stat(filepath.Join(cached.app.Dirs.Models, "face0-synthfaces", "face0.json")); err != nil {
		return fmt.Errorf("%w: the shipped model is not in %s (run from the repository root or pass --models)", errSkip, cached.app.Dirs.Models)
	}
	img, err := os.ReadFile(image)
	if err != nil {
		return fmt.Errorf("%w: %v (pass --input-image)", errSkip, err)
	}
	wf, _, err := workflow.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: %v (pass --workflow)", errSkip, err)
	}
	for _, s := range []*benchServer{cached, nocache} {
		if err := os.WriteFile(filepath.Join(s.app.Dirs.Input, filepath.Base(image)), img, 0o644); err != nil {
			return err
		}
	}
	// The server takes native workflows as well as ComfyUI API prompts.
	prompt := func(i int) (map[string]any, error) {
		for _, n := range wf.Nodes {
			switch n.Type {
			case "Face0Sampler":
				n.Inputs["seed"] = workflow.Literal(json.Number(fmt.Sprint(1000 + i)))
			case "EncodeText":
				n.Inputs["text"] = workflow.Literal(fmt.Sprintf("a photo portrait of a smiling person %d", i))
			}
		}
		b, err := wf.Marshal()
		if err != nil {
			return nil, err
		}
		var native map[string]any
		err = json.Unmarshal(b, &native)
		return native, err
	}
	run := func(s *benchServer, i int) (time.Duration, error) {
		p, err := prompt(i)
		if err != nil {
			return 0, err
		}
		return s.run(p)
	}
	// One run each first: the models load once per process.
	for _, s := range []*benchServer{cached, nocache} {
		if _, err := run(s, -1); err != nil {
			if strings.Contains(err.Error(), "onnxruntime") {
				return fmt.Errorf("%w: %v", errSkip, err)
			}
			return benchFailed("default workflow", s, err)
		}
	}
	wf3, err := interleaved(runs,
		func(i int) (time.Duration, error) { return run(nocache, i) },
		func(i int) (time.Duration, error) { return run(cached, i) },
		func(int) (time.Duration, error) { return run(cached, -1) },
	)
	if err != nil {
		return fmt.Errorf("default workflow: %w", err)
	}
	firstNC, first, rerun := wf3[0], wf3[1], wf3[2]
	t.add("default Face0 workflow, first run, --no-cache", firstNC.median(), 0, "", "")
	t.add("default Face0 workflow, first run, with the cache", first.median(), firstNC.median(), "<= 1.2x --no-cache", "")
	t.add("default Face0 workflow, fully cached re-run", rerun.median(), 0, "", "")
	return nil
}

func benchFailed(figure string, s *benchServer, err error) error {
	return fmt.Errorf("%s on the %s server: %w\n%s", figure, s.name, err, s.log.tail())
}

func parseWorkflow(src string) (*workflow.Workflow, error) {
	w, _, err := workflow.Parse([]byte(src))
	return w, err
}

// memcpyBench copies size bytes between two buffers whose pages are mapped.
type memcpyBench struct{ src, dst []byte }

func newMemcpy(size int) *memcpyBench {
	m := &memcpyBench{src: make([]byte, size), dst: make([]byte, size)}
	for i := range m.src {
		m.src[i] = byte(i)
	}
	copy(m.dst, m.src)
	return m
}

// measure is the best of 5 copies: one sample of the baseline.
func (m *memcpyBench) measure() time.Duration {
	best := time.Duration(1 << 62)
	for range 5 {
		t0 := time.Now()
		copy(m.dst, m.src)
		best = min(best, time.Since(t0))
	}
	return best
}

// interleaved runs each of fs once per round, for n rounds, so that what
// else the machine does weighs on every figure alike, and returns each one's
// samples in round order.
func interleaved(n int, fs ...func(i int) (time.Duration, error)) ([]samples, error) {
	out := make([]samples, len(fs))
	for i := 0; i < n; i++ {
		for j, f := range fs {
			d, err := f(i)
			if err != nil {
				return nil, err
			}
			out[j] = append(out[j], d)
		}
	}
	return out, nil
}

// perStep is the median over rounds of (a-b)/steps: what each extra step of
// a costs over b, paired round by round so that slow rounds cancel out.
func perStep(a, b samples, steps int) time.Duration {
	d := make(samples, len(a))
	for i := range a {
		d[i] = (a[i] - b[i]) / time.Duration(steps)
	}
	return d.median()
}

type benchRow struct {
	name            string
	value, base     time.Duration
	goal, reference string
}

type benchTable struct {
	rows  []benchRow
	notes []string
}

// add records a figure; with a baseline its ratio is printed.
func (t *benchTable) add(name string, v, base time.Duration, goal, reference string) {
	t.rows = append(t.rows, benchRow{name: name, value: v, base: base, goal: goal, reference: reference})
}

func (t *benchTable) note(s string) { t.notes = append(t.notes, s) }

func (t *benchTable) print(f *os.File) {
	w := tabwriter.NewWriter(f, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tmedian\tratio\tgoal\tbefore (issue 13)")
	for _, r := range t.rows {
		ratio := ""
		if r.base > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.value)/float64(r.base))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.name, ms(r.value), ratio, r.goal, r.reference)
	}
	w.Flush()
	for _, n := range t.notes {
		fmt.Fprintln(f, "note:", n)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }
