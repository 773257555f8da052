package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/cluster/worker"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/internal/config"
)

func cmdWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	home := fs.String("home", config.Home(), "face0's data folder (models/, plugins/, temp/ of this machine)")
	plugins := fs.String("plugins", "", "third-party plugins folder (default HOME/plugins)")
	url := fs.String("nats", "", "the NATS server of the face0 server (face0 serve --nats ...), like nats://gpu-box:4222")
	token := fs.String("token", os.Getenv(cluster.EnvToken), "the NATS token (default $"+cluster.EnvToken+")")
	nkey := fs.String("nkey", "", "an NKey seed file (SU...) instead of a token")
	tlsCA := fs.String("tls-ca", "", "a PEM file of the NATS server's certificate (when self-signed) or of its CA: connect with TLS and trust it")
	newNKey := fs.String("new-nkey", "", "write a new NKey seed to this file (readable by you only), print its public key for the server's --nats-nkeys file, and exit")
	name := fs.String("name", "", "this worker's name in the server's log and the nodes' (default: the host name)")
	slots := fs.Int("slots", 1, "nodes run at once")
	packs := fs.String("packs", strings.Join(builtinNames(), ","), "built-in packs to offer (comma-separated; none for only the plugins folder's)")
	gpu := fs.String("gpu", "auto", "the GPU to advertise: auto (nvidia-smi's first), none, or a name")
	ackWait := fs.Duration("ack-wait", 30*time.Second, "how long a node may go without a heartbeat before it goes to another worker")
	verbose := fs.Bool("v", false, "log every node taken")
	memMB := fs.Int64("tensor-memory-mb", 1024, "MiB of tensors kept at hand for the next node")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `usage: face0 worker --nats URL [--token TOKEN | --nkey SEEDFILE] [flags]
       face0 worker --new-nkey SEEDFILE

Runs nodes for a face0 server on this machine: the server (face0 serve --nats)
sends each node to a worker whose packs and models can run it. Stop with
Ctrl-C: the running nodes finish first (a second Ctrl-C hands them to
another worker at once). See docs/scale-out.md.

`)
		fs.PrintDefaults()
	}
	if pos, err := parseInterleaved(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "face0 worker: unexpected argument %q\n", pos[0])
		fs.Usage()
		return exitCode(2)
	}
	if *newNKey != "" {
		pub, err := cluster.NewNKey(*newNKey)
		if err != nil {
			return fmt.Errorf("--new-nkey: %w", err)
		}
		fmt.Println(pub)
		fmt.Fprintf(os.Stderr, "face0 worker: wrote the seed to %s (keep it on this machine); add the public key above to the server's --nats-nkeys file, then run face0 worker --nats URL --nkey %s\n", *newNKey, *newNKey)
		return nil
	}
	if *url == "" {
		fmt.Fprintln(os.Stderr, "face0 worker: --nats URL is required: the NATS server the face0 server accepts workers on")
		fs.Usage()
		return exitCode(2)
	}
	if *slots < 1 {
		return fmt.Errorf("--slots %d: a worker runs at least one node at a time", *slots)
	}
	builtins, err := pickPacks(*packs)
	if err != nil {
		return err
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	gpuName := detectGPU(*gpu)

	// First signal: take no more nodes, finish those running. Second: hand
	// them back now.
	stop, abort := make(chan os.Signal, 2), make(chan struct{})
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first os.Signal
	go func() {
		first = <-stop
		cancel()
		<-stop
		close(abort)
	}()

	nc, err := connectWorker(ctx, *url, cluster.Auth{Token: *token, NKeySeed: *nkey, TLSCA: *tlsCA}, *name)
	if err != nil {
		return err
	}
	defer nc.Close()
	bus, err := cluster.Open(ctx, nc, nil)
	if err != nil {
		return err
	}
	a, err := app.Open(ctx, app.Options{Home: *home, PluginsDir: *plugins, Builtins: builtins, NoCache: true})
	if err != nil {
		return err
	}
	defer a.Close()
	for _, p := range a.Problems {
		fmt.Fprintln(os.Stderr, "face0: warning:", p)
	}
	w, err := worker.New(bus, a.Host, worker.Options{
		Name: *name, Slots: *slots, GPU: gpuName, Dirs: a.Dirs, AckWait: *ackWait,
		Memory: *memMB << 20, Version: config.Version, Log: os.Stderr, Verbose: *verbose,
		Models: func() []string { return modelFolders(a.Dirs.Models) },
	})
	if err != nil {
		return err
	}
	gpuText := "no GPU"
	if gpuName != "" {
		gpuText = "GPU " + gpuName
	}
	fmt.Fprintf(os.Stderr, "face0 worker %s: %d node types (packs %s), models %v, %s\n", *name, len(a.Host.Nodes()),
		strings.Join(a.Host.Packs(), " "), modelFolders(a.Dirs.Models), gpuText)
	go func() {
		<-ctx.Done()
		if first != nil {
			fmt.Fprintf(os.Stderr, "face0 worker %s: stopping; running nodes finish first (Ctrl-C again hands them to another worker now)\n", *name)
		}
		select {
		case <-abort:
			w.Abort()
		case <-time.After(24 * time.Hour):
		}
	}()
	if err := w.Run(ctx); err != nil {
		return err
	}
	if first != nil {
		return stoppedBy(first, "")
	}
	return nil
}

// connectWorker connects, waiting for a NATS server that is not up yet (a
// worker may start before its server); wrong credentials end it at once.
func connectWorker(ctx context.Context, url string, auth cluster.Auth, name string) (nc *nats.Conn, err error) {
	told := false
	for {
		nc, err = cluster.Connect(url, auth, "face0 worker "+name)
		if err == nil || !errors.Is(err, cluster.ErrUnreachable) {
			return nc, err
		}
		if !told {
			fmt.Fprintf(os.Stderr, "face0 worker %s: %v; trying again every 2 s\n", name, err)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// pickPacks checks a --packs list against the built-in packs.
func pickPacks(list string) ([]string, error) {
	if list == "none" || list == "" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if _, ok := builtinPacks[p]; !ok {
			if _, ok := hiddenPacks[p]; !ok {
				return nil, fmt.Errorf("--packs: no built-in pack %q (have %s, or none)", p, strings.Join(builtinNames(), ", "))
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// detectGPU names the GPU to advertise.
func detectGPU(flag string) string {
	switch flag {
	case "none", "":
		return ""
	case "auto":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=name", "--format=csv,noheader").Output()
		if err != nil {
			return ""
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(first)
	}
	return flag
}

// modelFolders lists the folders of the models directory: the models this
// machine has, for the worker's advert.
func modelFolders(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
