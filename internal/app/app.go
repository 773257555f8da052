// Package app assembles a running face0: plugin processes, the node catalog,
// the durable cache and the engine, over one set of folders. The CLI and the
// server both start from here so that they behave the same.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/cache"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
)

// Options say where things are.
type Options struct {
	Home       string   // root folder; the others default to folders under it
	InputDir   string   // default Home/input
	OutputDir  string   // default Home/output
	TempDir    string   // default Home/temp
	ModelsDir  string   // default Home/models
	CacheDir   string   // default Home/cache
	PluginsDir string   // default Home/plugins
	Builtins   []string // built-in packs to start (re-executing this binary)
	Extra      []host.Source
	NoCache    bool // do not open the cache at all
	CacheBytes int64
	Log        io.Writer
	// Deadlines of plugin calls; zero fields are read from the environment
	// (FACE0_PLUGIN_START_TIMEOUT...), else defaulted (host.DefaultDeadlines).
	Deadlines host.Deadlines
	// Dispatch, when set, runs nodes on other machines too: it gets this
	// machine's plugin host and returns the runner the engine uses instead
	// (cluster/dispatch), whose nodes make the catalog.
	Dispatch func(local *host.Manager) (Dispatcher, error)
}

// Dispatcher is a runner that sends nodes to other machines and runs the
// rest on this one's plugin host, to which it hands back what that lent.
type Dispatcher interface {
	engine.Runner
	engine.Releaser
	// Nodes and Types are what this machine and the workers offer.
	Nodes() []engine.NodeDef
	Types() []*pb.TypeSpec
	Close()
}

// App is a started face0.
type App struct {
	Host *host.Manager
	// Dispatcher runs nodes on other machines too; nil without.
	Dispatcher Dispatcher
	Catalog    *engine.Catalog
	Engine     *engine.Engine
	Cache      *cache.Store // nil with NoCache
	Dirs       *pb.Dirs
	// Problems are plugins or node specs that could not be loaded; the rest work.
	Problems []error
}

// ErrInterrupted is returned by Open when its context ends (a signal) while
// the plugins start; what did start is stopped again.
var ErrInterrupted = errors.New("interrupted while starting the plugins")

// Open starts everything. Call Close when done. Open returns ErrInterrupted
// as soon as ctx ends, whatever the plugins are doing.
func Open(ctx context.Context, o Options) (*App, error) {
	if o.Log == nil {
		o.Log = os.Stderr
	}
	env, err := host.DeadlinesFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	o.Deadlines = mergeDeadlines(o.Deadlines, env)
	def := func(p *string, sub string) {
		if *p == "" {
			*p = filepath.Join(o.Home, sub)
		}
	}
	def(&o.InputDir, "input")
	def(&o.OutputDir, "output")
	def(&o.TempDir, "temp")
	if o.ModelsDir == "" {
		// The same rule as `face0 models` and `face0 train`.
		o.ModelsDir = os.Getenv("FACE0_MODELS")
	}
	def(&o.ModelsDir, "models")
	def(&o.CacheDir, "cache")
	def(&o.PluginsDir, "plugins")
	for _, d := range []string{o.InputDir, o.OutputDir, o.TempDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create folder: %w", err)
		}
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	dirs := &pb.Dirs{Input: abs(o.InputDir), Output: abs(o.OutputDir), Temp: abs(o.TempDir), Models: abs(o.ModelsDir)}

	var sources []host.Source
	for _, b := range o.Builtins {
		s, err := host.Builtin(b)
		if err != nil {
			return nil, err
		}
		sources = append(sources, s)
	}
	found, err := host.Discover(o.PluginsDir)
	if err != nil {
		return nil, err
	}
	sources = append(sources, found...)
	sources = append(sources, o.Extra...)
	// Plugins learn the folders at start too, not only with each execution:
	// node specs list choices (models on disk) before anything runs.
	for i := range sources {
		sources[i].Env = append(sources[i].Env, "FACE0_MODELS="+dirs.Models, "FACE0_INPUT="+dirs.Input)
	}
	if len(sources) == 0 {
		return nil, errors.New("no node packs to start")
	}
	mgr, problems := host.Start(ctx, sources, host.WithLog(o.Log), host.WithDeadlines(o.Deadlines))
	if ctx.Err() != nil {
		mgr.Close()
		return nil, ErrInterrupted
	}
	var runner interface {
		engine.Runner
		Nodes() []engine.NodeDef
		Types() []*pb.TypeSpec
	} = mgr
	a := &App{Host: mgr, Dirs: dirs}
	opts := []engine.Option{engine.WithDirs(dirs)}
	if o.Dispatch != nil {
		d, err := o.Dispatch(mgr)
		if err != nil {
			mgr.Close()
			return nil, err
		}
		a.Dispatcher, runner = d, d
		// Nodes out on workers cost this machine nothing while they run;
		// the dispatcher bounds the nodes run here.
		opts = append(opts, engine.WithParallelism(256))
	}
	cat, specProblems := engine.NewCatalog(runner.Nodes(), runner.Types())
	a.Catalog, a.Problems = cat, append(problems, specProblems...)
	if !o.NoCache {
		// The cache's warnings (damaged index replaced, entries dropped)
		// go where the rest of face0's messages go.
		copts := []cache.Option{cache.WithLog(o.Log)}
		if o.CacheBytes > 0 {
			copts = append(copts, cache.WithMaxBytes(o.CacheBytes))
		}
		c, err := cache.Open(o.CacheDir, copts...)
		if err != nil {
			if a.Dispatcher != nil {
				a.Dispatcher.Close()
			}
			mgr.Close()
			return nil, err
		}
		a.Cache = c
		opts = append(opts, engine.WithCache(c))
	}
	a.Engine = engine.New(runner, opts...)
	return a, nil
}

// Refresh asks the running plugins for their node specs again and returns a
// new catalog; the App's own Catalog field is left as it was (the caller owns
// the switch). Specs change while plugins run, e.g. when a Train node writes a
// model that the sampler nodes then offer.
func (a *App) Refresh(ctx context.Context) (*engine.Catalog, []error) {
	problems := a.Host.Refresh(ctx)
	var cat *engine.Catalog
	var errs []error
	if a.Dispatcher != nil {
		cat, errs = engine.NewCatalog(a.Dispatcher.Nodes(), a.Dispatcher.Types())
	} else {
		cat, errs = engine.NewCatalog(a.Host.Nodes(), a.Host.Types())
	}
	return cat, append(problems, errs...)
}

// mergeDeadlines fills the zero fields of d from env.
func mergeDeadlines(d, env host.Deadlines) host.Deadlines {
	for _, f := range []struct{ v, env *time.Duration }{
		{&d.Start, &env.Start}, {&d.Describe, &env.Describe}, {&d.Fingerprint, &env.Fingerprint}, {&d.CancelGrace, &env.CancelGrace},
	} {
		if *f.v <= 0 {
			*f.v = *f.env
		}
	}
	return d
}

// Close stops the plugins and closes the cache.
func (a *App) Close() error {
	a.Engine.Wait() // background cache writes read what the plugins lent
	if a.Dispatcher != nil {
		a.Dispatcher.Close()
	}
	a.Host.Close()
	if a.Cache != nil {
		return a.Cache.Close()
	}
	return nil
}
