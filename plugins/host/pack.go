package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/face0/face0/plugins/procid"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/protocol"
	"github.com/face0/face0/plugins/shm"
)

// pack is one plugin: the process serving it now, started on demand and
// restarted after a crash, and processes it retired that still finish calls.
type pack struct {
	src   Source
	name  string         // as the pack calls itself; guarded by Manager.mu
	types []*pb.TypeSpec // the port types it declared; guarded by Manager.mu
	log   *logWriter
	out   *forwarder
	dl    Deadlines

	mem *shm.Host // the manager's: tensors in shared memory, in and out

	// ctx ends when the pack is stopped; it kills a process still starting.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cur      *proc
	starting *startAttempt
	retiring map[*proc]struct{} // retired, still finishing calls
	closed   bool
	stops    sync.WaitGroup // processes being stopped in the background
}

func newPack(src Source, log *logWriter, dl Deadlines, mem *shm.Host) *pack {
	ctx, cancel := context.WithCancel(context.Background())
	return &pack{
		src: src, log: log, out: newForwarder(log, src.Name), dl: dl, mem: mem,
		ctx: ctx, cancel: cancel, retiring: map[*proc]struct{}{},
	}
}

// proc is one plugin process.
type proc struct {
	client  *plugin.Client
	rpc     *protocol.Client
	pid     int
	sockets string
	sinks   []*lineSink
	tail    *tail

	// Guarded by pack.mu.
	inflight int  // calls of this host running on it
	retired  bool // takes no new calls; stopped when inflight reaches 0

	stopOnce sync.Once
}

type startAttempt struct {
	done chan struct{}
	err  error
}

// errStopped answers calls to a pack that was stopped.
var errStopped = errors.New("stopped")

// acquire returns the process to send a call to, starting one if none runs
// (first use, after a crash, after retirement), and counts the call on it.
// Release it when the call ends. The caller's ctx bounds the wait, the Start
// deadline the start itself.
func (p *pack) acquire(ctx context.Context) (*proc, error) {
	for tries := 0; ; tries++ {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errStopped
		}
		if c := p.cur; c != nil {
			if !c.client.Exited() {
				c.inflight++
				p.mu.Unlock()
				return c, nil
			}
			p.log.printf("face0: restarting plugin %s after it exited\n", p.src.Name)
			p.cur = nil
			p.stopLater(c)
		}
		if tries >= 2 {
			p.mu.Unlock()
			return nil, fmt.Errorf("plugin %s exits as soon as it starts", p.src.Name)
		}
		if p.starting == nil {
			a := &startAttempt{done: make(chan struct{})}
			p.starting = a
			go p.start(a)
		}
		a := p.starting
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-a.done:
		}
		if a.err != nil {
			return nil, a.err
		}
	}
}

// release ends a call acquire counted; a retired process with no call left
// is stopped.
func (p *pack) release(c *proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.inflight--
	if c.retired && c.inflight == 0 {
		delete(p.retiring, c)
		p.stopLater(c)
	}
}

func (p *pack) start(a *startAttempt) {
	c, err := p.launch()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil:
		a.err = err
	case p.closed:
		a.err = errStopped
		p.stopLater(c)
	default:
		p.cur = c
	}
	p.starting = nil
	close(a.done)
}

// launch starts a process and connects to it.
func (p *pack) launch() (*proc, error) {
	sockets, err := socketDir()
	if err != nil {
		return nil, fmt.Errorf("start: socket folder: %w", err)
	}
	// The pack's context kills a process still starting when the pack stops
	// (face0 interrupted during its start): go-plugin's own start cannot be
	// cancelled otherwise.
	cmd := exec.CommandContext(p.ctx, p.src.Path, p.src.Args...)
	// The plugin dies with the host, even if the host is killed with SIGKILL.
	// Its own process group keeps the terminal's Ctrl-C and a SIGTERM sent to
	// the host's group (systemd, timeout, kill -- -PGID) away from it: the
	// host shuts its plugins down itself, instead of seeing each one die
	// under it and reporting "plugin process exited" as an error.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Env = append(os.Environ(), "FACE0_PLUGIN_NAME="+p.src.Name, plugin.EnvUnixSocketDir+"="+sockets,
		protocol.EnvCancelGrace+"="+p.dl.CancelGrace.String())
	cmd.Env = append(cmd.Env, p.src.Env...)
	t := &tail{}
	sink := func() *lineSink { return &lineSink{f: p.out, tail: t} }
	c := &proc{sockets: sockets, tail: t, sinks: []*lineSink{sink(), sink(), sink()}}
	c.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		VersionedPlugins: protocol.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  protocol.DialOptions(),
		StartTimeout:     p.dl.Start,
		// The process's stderr (panics, and what it writes once serving), and
		// what it wrote through go-plugin's stdio stream before that.
		Stderr:     c.sinks[0],
		SyncStderr: c.sinks[1],
		SyncStdout: c.sinks[2],
		// Off: go-plugin would log each stderr line a second time.
		Logger: hclog.New(&hclog.LoggerOptions{Name: "plugin." + p.src.Name, Level: hclog.Off, Output: p.log}),
	})
	fail := func(err error) (*proc, error) {
		c.stop()
		if p.ctx.Err() != nil {
			return nil, errStopped
		}
		return nil, err
	}
	proto, err := c.client.Client()
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, context.DeadlineExceeded) || msg == "timeout while waiting for plugin to start":
			msg = fmt.Sprintf("did not start within %s (%s raises the limit)", p.dl.Start, EnvStartTimeout)
		case msg == "plugin exited before we could connect" || strings.HasPrefix(msg, "Unrecognized remote plugin message: \nFailed to read any lines"):
			// go-plugin's long guess at the cause does not apply: the
			// process ended before its handshake.
			msg = "its process exited before its handshake"
		}
		if w := c.tail.words(); w != "" {
			msg += fmt.Sprintf(" (its last words: %q)", w)
		}
		return fail(fmt.Errorf("start: %s (is it a face0 plugin built with the current SDK? it must call sdk.Serve and print nothing to stdout before it)", msg))
	}
	raw, err := proto.Dispense(protocol.PluginName)
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	c.rpc = raw.(*protocol.Client)
	if cmd.Process != nil {
		c.pid = cmd.Process.Pid
	}
	return c, nil
}

// socketPrefix starts the name of every plugin socket folder; the host's
// procid follows it ("face0-plugin-<pid>.<start>-<random>"), so that a later
// host can remove the folders of one that was killed (SweepSockets).
const socketPrefix = "face0-plugin-"

// socketDir makes the folder a process makes its unix socket in. A socket's
// path must fit in 108 bytes; go-plugin adds at most 17 to the folder
// ("/plugin" and a random number), so under a long TMPDIR the folder goes to
// /tmp instead of failing every start.
func socketDir() (string, error) {
	pattern := socketPrefix + procid.Self().String() + "-"
	dir, err := os.MkdirTemp("", pattern)
	if err != nil || len(dir) <= 90 {
		return dir, err
	}
	os.Remove(dir)
	return os.MkdirTemp("/tmp", pattern)
}

// stop kills the process and removes its socket folder.
func (c *proc) stop() {
	c.stopOnce.Do(func() {
		c.client.Kill()
		for _, s := range c.sinks {
			s.flush()
		}
		os.RemoveAll(c.sockets)
	})
}

// stopLater stops c in the background (go-plugin's Kill waits for the
// process); p.mu is held. kill waits for these.
func (p *pack) stopLater(c *proc) {
	p.stops.Add(1)
	go func() {
		defer p.stops.Done()
		c.stop()
	}()
}

// kill stops every process of the pack, including one still starting, and
// returns when they are gone.
func (p *pack) kill() {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	starting := p.starting
	var all []*proc
	if p.cur != nil {
		all = append(all, p.cur)
		p.cur = nil
	}
	for c := range p.retiring {
		all = append(all, c)
	}
	clear(p.retiring)
	p.mu.Unlock()
	for _, c := range all {
		c.stop()
	}
	if starting != nil {
		<-starting.done // the cancelled context killed the process
	}
	p.stops.Wait()
	p.out.close()
}

// retire sends new calls to a fresh process and stops c once the calls it
// is running end. why says what happened, for the log.
func (p *pack) retire(c *proc, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.retired || p.closed {
		return
	}
	c.retired = true
	if p.cur == c {
		p.cur = nil
	}
	if c.inflight == 0 {
		p.log.printf("face0: plugin %s: %s; stopping its process %d, new calls go to a fresh one\n", p.src.Name, why, c.pid)
		p.stopLater(c)
		return
	}
	p.retiring[c] = struct{}{}
	p.log.printf("face0: plugin %s: %s; new calls go to a fresh process, and process %d is stopped once its %d other running call(s) finish\n", p.src.Name, why, c.pid, c.inflight)
}

// awaitCancelled follows a call the host cancelled: if its node is still
// running after the grace period, the process is retired.
func (p *pack) awaitCancelled(c *proc, id, nodeType string) {
	ctx, cancel := context.WithTimeout(p.ctx, p.dl.CancelGrace+30*time.Second)
	defer cancel()
	stubborn, err := c.rpc.AwaitCall(ctx, id)
	if err == nil && stubborn {
		p.retire(c, fmt.Sprintf("node %s ignored cancellation for %s", nodeType, p.dl.CancelGrace))
	}
}

// callIDs names Execute calls for AwaitCall.
var callIDs atomic.Uint64

func nextCallID() string { return strconv.FormatUint(callIDs.Add(1), 10) }

// exited reports whether the process has gone, waiting a little: after a
// crash the broken stream can arrive before go-plugin's goroutine has reaped
// the process, which on a loaded machine (seen under -race on 2 cores) can
// take longer than half a second. Only a broken call pays for the wait.
func (c *proc) exited() bool {
	for i := 0; i < 200; i++ {
		if c.client.Exited() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// errRetired means the call was refused by a retired process and never ran:
// send it again.
var errRetired = errors.New("plugin process retired")

// maxRetired bounds how often one call is refused by retired processes
// before giving up (each refusal starts a fresh process).
const maxRetired = 3

// explain turns a gRPC failure of a call made while doing something ("running
// this node", "describing its nodes") into an error that says what happened.
func (p *pack) explain(c *proc, err error, doing string) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Aborted:
		if st.Message() == protocol.Retired {
			p.retire(c, "its process takes no new calls (one of its nodes ignored cancellation)")
			return errRetired
		}
	case codes.Unavailable, codes.Internal, codes.Canceled:
		// Canceled while the caller's context runs: the connection closed
		// under the call, because the process died.
		if c.exited() {
			msg := fmt.Sprintf("plugin %s crashed (its process exited) while %s", p.src.Name, doing)
			if w := c.tail.words(); w != "" {
				msg += fmt.Sprintf(" (its last words: %q)", w)
			}
			return errors.New(msg)
		}
	case codes.Unknown, codes.InvalidArgument, codes.NotFound:
		return errors.New(st.Message())
	}
	return fmt.Errorf("plugin %s: %s", p.src.Name, st.Message())
}

// restartSoon starts a fresh process in the background so the next call does
// not pay for the start.
func (p *pack) restartSoon() {
	go func() {
		ctx, cancel := context.WithTimeout(p.ctx, p.dl.Start)
		defer cancel()
		c, err := p.acquire(ctx)
		if err != nil {
			if !errors.Is(err, errStopped) && p.ctx.Err() == nil {
				p.log.printf("face0: plugin %s did not restart: %v\n", p.src.Name, err)
			}
			return
		}
		p.release(c)
	}()
}

// missed reports whether a call made with dctx (ctx with a deadline) failed
// because it missed the deadline. The plugin's side enforces the deadline too
// and may cancel the stream a moment before dctx expires here, so a call
// cancelled while ctx still runs waits out dctx to tell.
func missed(ctx, dctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return true
	case codes.Canceled:
		<-dctx.Done()
		return ctx.Err() == nil
	}
	return dctx.Err() != nil
}

// describe asks the pack for its nodes within the Describe deadline.
func (p *pack) describe(ctx context.Context) (*pb.DescribeResponse, error) {
	for tries := 0; ; tries++ {
		c, err := p.acquire(ctx)
		if err != nil {
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, p.dl.Describe)
		resp, err := c.rpc.Describe(dctx, &pb.DescribeRequest{HostVersion: "1"})
		timedOut := missed(ctx, dctx, err)
		cancel()
		p.release(c)
		switch {
		case err == nil:
			return resp, nil
		case timedOut:
			return nil, fmt.Errorf("did not list its nodes within %s (%s raises the limit)", p.dl.Describe, EnvDescribeTimeout)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		err = p.explain(c, err, "describing its nodes")
		if !errors.Is(err, errRetired) || tries >= maxRetired {
			return nil, err
		}
	}
}

// fingerprint asks for a node's fingerprint within the Fingerprint deadline.
func (p *pack) fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	var fp []byte
	err := p.quick(ctx, "compute the fingerprint of node "+req.NodeType, func(ctx context.Context, c *proc) error {
		resp, err := c.rpc.Fingerprint(ctx, req)
		fp = resp.GetFingerprint()
		return err
	})
	return fp, err
}

// verify asks whether a cached result's side effects are still in place,
// within the Fingerprint deadline: both are quick checks before a run.
func (p *pack) verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	var resp *pb.VerifyResponse
	err := p.quick(ctx, "check the cached result of node "+req.NodeType, func(ctx context.Context, c *proc) (err error) {
		resp, err = c.rpc.Verify(ctx, req)
		return err
	})
	return resp, err
}

// quick makes one short call (what says what it asks, as "compute ...")
// under the Fingerprint deadline, sending it again to a fresh process when a
// retired one refused it.
func (p *pack) quick(ctx context.Context, what string, call func(context.Context, *proc) error) error {
	for tries := 0; ; tries++ {
		c, err := p.acquire(ctx)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", p.src.Name, err)
		}
		fctx, cancel := context.WithTimeout(ctx, p.dl.Fingerprint)
		err = call(fctx, c)
		timedOut := missed(ctx, fctx, err)
		cancel()
		p.release(c)
		switch {
		case err == nil:
			return nil
		case timedOut:
			return fmt.Errorf("plugin %s did not %s within %s (%s raises the limit)", p.src.Name, what, p.dl.Fingerprint, EnvFingerprintTimeout)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		err = p.explain(c, err, "trying to "+what)
		if !errors.Is(err, errRetired) || tries >= maxRetired {
			if c.client.Exited() {
				p.restartSoon()
			}
			return err
		}
	}
}
