package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/internal/config"
)

// setFlags collects repeated --set NODE.INPUT=VALUE.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// commonFlags are the folder flags every engine command takes.
type commonFlags struct {
	home, input, out, plugins, cacheDir string
	noCache                             bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.home, "home", config.Home(), "face0's data folder")
	fs.StringVar(&c.input, "input", "", "input folder (default HOME/input)")
	fs.StringVar(&c.out, "out", "", "output folder (default HOME/output)")
	fs.StringVar(&c.plugins, "plugins", "", "third-party plugins folder (default HOME/plugins)")
	fs.StringVar(&c.cacheDir, "cache", "", "cache folder (default HOME/cache)")
	fs.BoolVar(&c.noCache, "no-cache", false, "neither use nor fill the cache")
}

func (c *commonFlags) open(ctx context.Context, mods ...func(*app.Options)) (*app.App, error) {
	o := app.Options{
		Home: c.home, InputDir: c.input, OutputDir: c.out, PluginsDir: c.plugins, CacheDir: c.cacheDir,
		Builtins: builtinNames(), NoCache: c.noCache,
	}
	for _, m := range mods {
		m(&o)
	}
	a, err := app.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	for _, p := range a.Problems {
		fmt.Fprintln(os.Stderr, "face0: warning:", p)
	}
	return a, nil
}

// parseInterleaved lets flags come before or after positional arguments.
// Its error is the exit: 0 after -h (the flag package printed the usage),
// 2 for a bad flag (it printed the problem and the usage).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitCode(0)
			}
			return nil, exitCode(2)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	var sets setFlags
	fs.Var(&sets, "set", "override a literal input: NODE.INPUT=VALUE (VALUE as JSON, else as a string); repeatable")
	outputs := fs.String("outputs", "", "comma-separated node ids to compute (default: the output nodes)")
	plain := fs.Bool("plain", false, "plain log lines even on a terminal")
	jsonEvents := fs.Bool("json", false, "print every event as a JSON line on stdout")
	local := fs.Bool("local", false, "run here even when a face0 server runs on this home (it holds the cache: add --no-cache or --cache DIR)")
	token := fs.String("token", os.Getenv("FACE0_TOKEN"), "the running server's token, if it needs one (default $FACE0_TOKEN)")
	device := fs.String("device", "", "set the device input of every node that has one: cpu or cuda (GPU: make setup-gpu first)")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `usage: face0 run WORKFLOW.json|IMAGE.png [flags]

Runs a workflow (or the workflow saved in a PNG). When a face0 server runs on
the same home (face0 serve, make serve), the workflow runs on that server, as
a ComfyUI script's would: inputs named in the workflow are uploaded from
--input if the server reads another folder, progress streams from it, and the
saved images are fetched into --out. --local, --no-cache, --cache and
--plugins run it in this process instead.

`)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitCode(2)
	}
	wf, _, err := workflow.ReadFile(pos[0])
	if err != nil {
		return err
	}
	if err := applySets(wf, sets); err != nil {
		return err
	}
	var want []string
	if *outputs != "" {
		want = strings.Split(*outputs, ",")
	}

	ctx, caught, stop := signalContext()
	defer stop()
	sink, closeSink := runSink(*jsonEvents, *plain)
	defer closeSink()

	var server *serverRecord
	if !*local && !c.noCache && c.cacheDir == "" && c.plugins == "" {
		rec, ok, err := liveServer(ctx, c.home, *token)
		switch {
		case ok && errors.Is(err, errNeedsToken):
			return fmt.Errorf("a face0 server runs on %s (%s, pid %d) and needs its token: set FACE0_TOKEN or pass --token; or run here with --local --no-cache", c.home, rec.URL, rec.PID)
		case ok:
			server = &rec
		}
	}
	if server != nil {
		err := runOnServer(ctx, *server, *token, wf, want, *device, c, sink, closeSink)
		if sig := caught(); sig != nil && err != nil {
			return stoppedBy(sig, err.Error())
		}
		return err
	}

	a, err := c.open(ctx)
	if err != nil {
		if errors.Is(err, cache.ErrLocked) {
			return lockedHint(err, c.home)
		}
		if sig := caught(); sig != nil {
			return stoppedBy(sig, err.Error()) // "interrupted while starting the plugins"
		}
		return err
	}
	defer a.Close()
	if err := applyDevice(wf, catalogInputs(a.Catalog), *device); err != nil {
		return err
	}
	plan, err := a.Catalog.Compile(wf, want)
	if err != nil {
		return err
	}
	promptID := fmt.Sprintf("run-%d", time.Now().UnixNano())
	res, err := a.Engine.Run(ctx, plan, engine.RunOptions{PromptID: promptID, Sink: sink})
	closeSink()
	if res != nil {
		printOutputs(res, a.Dirs.Output)
	}
	if sig := caught(); sig != nil && err != nil {
		return stoppedBy(sig, "interrupted")
	}
	if errors.Is(err, engine.ErrInterrupted) {
		return errors.New("interrupted")
	}
	return err
}

// runSink is where a run's events go: JSON lines on stdout (--json),
// progress bars on a terminal, else plain log lines. close finishes the
// bars (idempotent).
func runSink(jsonEvents, plain bool) (events.Sink, func()) {
	switch {
	case jsonEvents:
		enc := json.NewEncoder(os.Stdout)
		return events.SinkFunc(func(e events.Event) { _ = enc.Encode(e) }), func() {}
	case !plain && isTerminal(os.Stderr):
		b := newBars(os.Stderr)
		return b, b.close
	}
	return newLogLines(os.Stderr), func() {}
}

// runOnServer runs the workflow on the home's server and prints the saved
// files as a local run does.
func runOnServer(ctx context.Context, rec serverRecord, token string, wf *workflow.Workflow, want []string, device string, c commonFlags, sink events.Sink, closeSink func()) error {
	abs := func(p, def string) string {
		if p == "" {
			p = filepath.Join(c.home, def)
		}
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	fmt.Fprintf(os.Stderr, "face0: running on the server at %s (pid %d, the same home); --local runs here instead\n", rec.URL, rec.PID)
	r := &remoteRun{base: rec.URL, token: token, wf: wf, server: rec, input: abs(c.input, "input"), out: abs(c.out, "output"),
		outputs: want, sink: sink, log: os.Stderr, hc: &http.Client{}}
	if device != "" {
		inputs, err := r.nodeInputs(ctx)
		if err != nil {
			return err
		}
		if err := applyDevice(wf, inputs, device); err != nil {
			return err
		}
	}
	res, err := r.run(ctx)
	closeSink()
	if res != nil {
		for _, f := range res.files {
			fmt.Println(f)
		}
	}
	return err
}

// lockedHint explains a cache held by another process: by the home's
// server when one runs (face0 run submits to it unless told --local), and
// how to run anyway.
func lockedHint(err error, home string) error {
	who := "another face0 process"
	if rec, ok, _ := liveServer(context.Background(), home, ""); ok {
		who = fmt.Sprintf("the face0 server at %s (pid %d)", rec.URL, rec.PID)
	}
	return fmt.Errorf("%w\n%s holds this home's cache. Leave out --local to run on that server, or run here with --no-cache (nothing cached) or --cache DIR (a cache of its own)", err, who)
}

func printOutputs(res *engine.Result, outDir string) {
	for id, outs := range res.Outputs {
		for _, v := range outs.GetUi() {
			for _, item := range v.GetList().GetItems() {
				f := item.GetRecord().GetFields()
				if f["type"].GetString_() != "output" {
					continue
				}
				fmt.Printf("%s: %s\n", id, filepath.Join(outDir, f["subfolder"].GetString_(), f["filename"].GetString_()))
			}
		}
	}
}

// applySets applies --set overrides. Node ids may contain dots, so the id is
// the longest prefix before a dot that names a node.
func applySets(w *workflow.Workflow, sets []string) error {
	for _, s := range sets {
		lhs, raw, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("--set %q: expected NODE.INPUT=VALUE", s)
		}
		var node *workflow.Node
		var input string
		for i := len(lhs) - 1; i > 0; i-- {
			if lhs[i] != '.' {
				continue
			}
			if n := w.Node(lhs[:i]); n != nil {
				node, input = n, lhs[i+1:]
				break
			}
		}
		if node == nil || input == "" {
			return fmt.Errorf("--set %q: no node in the workflow matches %q (expected NODE.INPUT)", s, lhs)
		}
		var v any = raw
		d := json.NewDecoder(strings.NewReader(raw))
		d.UseNumber()
		var parsed any
		if err := d.Decode(&parsed); err == nil && !d.More() {
			v = parsed
		}
		if node.Inputs == nil {
			node.Inputs = map[string]workflow.Input{}
		}
		node.Inputs[input] = workflow.Literal(v)
	}
	return nil
}

func cmdNodes(args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the node specs as JSON")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: face0 nodes [--json] [folder flags]")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "face0 nodes: unexpected argument %q (it lists every node type; `face0 nodes --json | jq` picks one)\n", pos[0])
		return exitCode(2)
	}
	c.noCache = true
	ctx, _, stop := signalContext() // a hung plugin start must not make Ctrl-C wait
	defer stop()
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	defs := a.Catalog.Nodes()
	if *asJSON {
		type portJSON struct {
			Name     string          `json:"name"`
			Type     string          `json:"type"`
			Optional bool            `json:"optional,omitempty"`
			Schema   json.RawMessage `json:"schema,omitempty"`
		}
		type nodeJSON struct {
			Type          string         `json:"type"`
			Pack          string         `json:"pack"`
			Category      string         `json:"category,omitempty"`
			Description   string         `json:"description,omitempty"`
			Version       string         `json:"version"`
			Deterministic bool           `json:"deterministic"`
			OutputNode    bool           `json:"output_node,omitempty"`
			SideEffects   bool           `json:"side_effects,omitempty"`
			Inputs        []portJSON     `json:"inputs"`
			Outputs       []portJSON     `json:"outputs"`
			Schema        map[string]any `json:"schema"`
		}
		var out []nodeJSON
		for _, d := range defs {
			n := nodeJSON{Type: d.Spec.Type, Pack: d.Pack, Category: d.Spec.Category, Description: d.Spec.Description,
				Version: d.Spec.Version, Deterministic: d.Spec.Deterministic, OutputNode: d.Spec.OutputNode, SideEffects: d.Spec.SideEffects,
				Inputs: []portJSON{}, Outputs: []portJSON{}, Schema: engine.NodeSchema(d.Spec)}
			for _, in := range d.Spec.Inputs {
				p := portJSON{Name: in.Name, Type: in.Type, Optional: in.Optional}
				if in.Schema != "" {
					p.Schema = json.RawMessage(in.Schema)
				}
				n.Inputs = append(n.Inputs, p)
			}
			for _, o := range d.Spec.Outputs {
				n.Outputs = append(n.Outputs, portJSON{Name: o.Name, Type: o.Type})
			}
			out = append(out, n)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, d := range defs {
		var ins, outs []string
		for _, in := range d.Spec.Inputs {
			s := in.Name + ":" + in.Type
			if in.Optional {
				s += "?"
			}
			ins = append(ins, s)
		}
		for _, o := range d.Spec.Outputs {
			outs = append(outs, o.Name+":"+o.Type)
		}
		fmt.Printf("%-16s %-10s (%s) -> (%s)\n", d.Spec.Type, "["+d.Pack+"]", strings.Join(ins, ", "), strings.Join(outs, ", "))
	}
	return nil
}
