package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/face0/face0/engine"
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

func (c *commonFlags) open(ctx context.Context) (*app.App, error) {
	a, err := app.Open(ctx, app.Options{
		Home: c.home, InputDir: c.input, OutputDir: c.out, PluginsDir: c.plugins, CacheDir: c.cacheDir,
		Builtins: builtinNames(), NoCache: c.noCache,
	})
	if err != nil {
		return nil, err
	}
	for _, p := range a.Problems {
		fmt.Fprintln(os.Stderr, "face0: warning:", p)
	}
	return a, nil
}

// parseInterleaved lets flags come before or after positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
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
	device := fs.String("device", "", "set the device input of every node that has one: cpu or cuda (GPU: make setup-gpu first)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: face0 run WORKFLOW.json|IMAGE.png [flags]")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitCode(2)
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()

	var want []string
	if *outputs != "" {
		want = strings.Split(*outputs, ",")
	}
	if err := applyDevice(wf, a.Catalog, *device); err != nil {
		return err
	}
	plan, err := a.Catalog.Compile(wf, want)
	if err != nil {
		return err
	}
	var sink events.Sink
	switch {
	case *jsonEvents:
		enc := json.NewEncoder(os.Stdout)
		sink = events.SinkFunc(func(e events.Event) { _ = enc.Encode(e) })
	case !*plain && isTerminal(os.Stderr):
		r := newBars(os.Stderr, plan)
		defer r.close()
		sink = r
	default:
		sink = newLogLines(os.Stderr)
	}
	promptID := fmt.Sprintf("run-%d", time.Now().UnixNano())
	res, err := a.Engine.Run(ctx, plan, engine.RunOptions{PromptID: promptID, Sink: sink})
	if r, ok := sink.(*bars); ok {
		r.close()
	}
	if res != nil {
		printOutputs(res, a.Dirs.Output)
	}
	if errors.Is(err, engine.ErrInterrupted) {
		return errors.New("interrupted")
	}
	return err
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
	if _, err := parseInterleaved(fs, args); err != nil {
		return exitCode(2)
	}
	c.noCache = true
	a, err := c.open(context.Background())
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
