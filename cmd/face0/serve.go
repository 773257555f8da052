package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/face0/face0/editor"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/internal/config"
	"github.com/face0/face0/server"
)

// editorFiles is the built browser editor (editor/dist, embedded). A variable
// so that a build without an editor can set it to nil and get the server's
// placeholder page.
var editorFiles fs.FS = editor.FS()

func cmdServe(args []string) error {
	flags := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c commonFlags
	c.register(flags)
	listen := flags.String("listen", "127.0.0.1:8188", "address to listen on: host:port, or a host alone (ComfyUI's --listen 0.0.0.0) with the port from --port")
	port := flags.Int("port", 0, "port to listen on, as ComfyUI's --port (overrides the port in --listen; default 8188)")
	token := flags.String("token", os.Getenv("FACE0_TOKEN"), "require this bearer token on every request (default $FACE0_TOKEN)")
	defaultWF := flags.String("default-workflow", "", "workflow file the editor opens on a first visit (default: the built-in example)")
	var origins setFlags
	flags.Var(&origins, "allow-origin", "let browser pages from this origin call the API (e.g. http://localhost:5173); repeatable")
	var hosts setFlags
	flags.Var(&hosts, "allow-host", "without a token, also answer requests addressed to this host name (besides localhost, IP addresses and the --listen name); repeatable")
	var nf natsFlags
	nf.register(flags)
	prompts := flags.Int("prompts", 0, "prompts run at once (default 1, in queue order; with --nats 8, so that workers share the queue)")
	historyMB := flags.Int64("history-mb", server.DefaultHistoryBytes>>20, "bound the history's stored size (prompts, output summaries, messages) in MiB; the oldest entries go first; 0: no bound")
	flags.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: face0 serve [--listen 127.0.0.1:8188] [--port 8188] [--token TOKEN] [--nats URL|embedded] [folder flags]")
		flags.PrintDefaults()
	}
	if pos, err := parseInterleaved(flags, args); err != nil {
		return err
	} else if len(pos) > 0 {
		fmt.Fprintf(os.Stderr, "face0 serve: unexpected argument %q\n", pos[0])
		flags.Usage()
		return exitCode(2)
	}
	addr, err := listenAddress(*listen, *port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "face0 serve: %v\n", err)
		return exitCode(2)
	}
	*listen = addr
	if *token == "" && !server.IsLoopback(*listen) {
		fmt.Fprintf(os.Stderr, "face0: warning: listening on %s without a token: anyone who can reach this address can run workflows and read your outputs; pass --token or set FACE0_TOKEN\n", *listen)
	}

	// Signals end the start too: a plugin that hangs as it starts must not
	// make face0 ignore Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var mods []func(*app.Options)
	if nf.url != "" {
		nc, dispatcher, err := nf.start(ctx, c.home)
		if err != nil {
			return fmt.Errorf("--nats: %w", err)
		}
		defer nc.close() // after the app: its dispatcher uses the connection
		mods = append(mods, func(o *app.Options) { o.Dispatch = dispatcher })
		how := "face0 worker --nats URL"
		if strings.HasPrefix(nc.url, "tls://") {
			how += " --tls-ca CERT"
		}
		fmt.Fprintf(os.Stderr, "face0: accepting workers through NATS at %s (%s on each machine; see docs/scale-out.md)\n", nc.url, how)
		if *prompts == 0 {
			*prompts = 8
		}
	}
	a, err := c.open(ctx, mods...)
	if err != nil {
		return err
	}
	defer a.Close()

	opts := []server.Option{
		server.WithVersion(config.Version), server.WithAllowedOrigins(origins...),
		server.WithAllowedHosts(append(hosts, *listen)...), server.WithHistoryBytes(*historyMB << 20),
		server.WithConcurrency(max(1, *prompts)),
	}
	if *token != "" {
		opts = append(opts, server.WithToken(*token))
	}
	if *defaultWF != "" {
		w, _, err := workflow.ReadFile(*defaultWF)
		if err != nil {
			return fmt.Errorf("--default-workflow: %w", err)
		}
		b, err := w.Marshal()
		if err != nil {
			return err
		}
		opts = append(opts, server.WithDefaultWorkflow(b))
	}
	if editorFiles != nil {
		opts = append(opts, server.WithEditor(editorFiles))
	}
	srv, err := server.New(a, filepath.Join(c.home, "server.db"), opts...)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using the port? pick one with --listen)", *listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	// `face0 run` on this home finds the server here and submits to it.
	removeRecord, err := writeServerRecord(c.home, serverRecord{PID: os.Getpid(), URL: localURL(ln.Addr()), Token: *token != "",
		Input: a.Dirs.Input, Output: a.Dirs.Output, Version: config.Version, Started: time.Now().UTC()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "face0: warning: could not write %s (face0 run will not find this server): %v\n", filepath.Join(c.home, ServerFile), err)
	} else {
		defer removeRecord()
	}
	fmt.Fprintf(os.Stderr, "face0: serving on http://%s (%d node types)\n", ln.Addr(), len(a.Catalog.Nodes()))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(os.Stderr, "face0: shutting down; queued prompts run on the next start")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// listenAddress joins --listen and --port: a --listen without a port takes
// --port's (8188 when neither gives one); --port, when given, wins.
func listenAddress(listen string, port int) (string, error) {
	if port < 0 || port > 65535 {
		return "", fmt.Errorf("--port %d: a port is 1-65535 (0 picks a free one)", port)
	}
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		// A host alone: "0.0.0.0", "localhost", "::1".
		host, p = strings.Trim(listen, "[]"), "8188"
	}
	if port > 0 {
		p = fmt.Sprint(port)
	}
	return net.JoinHostPort(host, p), nil
}
