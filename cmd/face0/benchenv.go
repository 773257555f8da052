package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/plugins/host"
	"github.com/face0/face0/server"
)

// benchServer is a face0 server started inside the bench process, driven the
// way ComfyUI is measured: POST /prompt, then wait on the websocket for
// "executing" with node null.
type benchServer struct {
	name string
	app  *app.App
	srv  *server.Server
	hs   *http.Server
	url  string
	ws   *websocket.Conn
	log  *lockedBuffer
	// drain is how long the last run's cache writes went on after it ended.
	drain time.Duration
}

type benchServerOptions struct {
	home     string
	models   string
	noCache  bool
	builtins []string // built-in packs besides the hidden bench pack
}

func startBenchServer(name string, o benchServerOptions) (*benchServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log := &lockedBuffer{}
	a, err := app.Open(context.Background(), app.Options{
		Home: o.home, ModelsDir: o.models, PluginsDir: filepath.Join(o.home, "no-plugins"),
		Builtins: o.builtins, Extra: []host.Source{{Name: "bench", Path: exe, Args: []string{"plugin", "bench"}}},
		NoCache: o.noCache, CacheBytes: 4 << 30, Log: log,
	})
	if err != nil {
		return nil, err
	}
	if len(a.Problems) > 0 {
		a.Close()
		return nil, fmt.Errorf("plugins: %v", a.Problems)
	}
	b := &benchServer{name: name, app: a, log: log}
	b.srv, err = server.New(a, filepath.Join(o.home, "server.db"), server.WithLog(log))
	if err != nil {
		a.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.close()
		return nil, err
	}
	b.url = "http://" + ln.Addr().String()
	b.hs = &http.Server{Handler: b.srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go b.hs.Serve(ln)
	b.ws, _, err = websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws?clientId=bench", nil)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return b, nil
}

func (b *benchServer) close() {
	if b.ws != nil {
		b.ws.Close()
	}
	if b.hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.hs.Shutdown(ctx)
		cancel()
	}
	if b.srv != nil {
		b.srv.Close()
	}
	b.app.Close()
}

// run submits a prompt (ComfyUI API or native) and returns the time until the server
// reports it finished.
func (b *benchServer) run(prompt any) (time.Duration, error) {
	req := map[string]any{"prompt": prompt, "client_id": "bench"}
	if p, ok := prompt.(apiPrompt); ok {
		// The chains have no output node: the server, as ComfyUI, runs
		// only what the request names then.
		req["partial_execution_targets"] = p.sinks()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	resp, err := http.Post(b.url+"/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	var out struct {
		PromptID string `json:"prompt_id"`
		Error    any    `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || out.PromptID == "" {
		return 0, fmt.Errorf("POST /prompt: %d %v %v", resp.StatusCode, out.Error, err)
	}
	var failure error
	b.ws.SetReadDeadline(time.Now().Add(10 * time.Minute))
	for {
		kind, msg, err := b.ws.ReadMessage()
		if err != nil {
			return 0, fmt.Errorf("websocket: %w", err)
		}
		if kind != websocket.TextMessage {
			continue
		}
		var m struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(msg, &m) != nil || m.Data["prompt_id"] != out.PromptID {
			continue
		}
		switch {
		case m.Type == "execution_error":
			failure = fmt.Errorf("node %v: %v", m.Data["node_id"], m.Data["exception_message"])
		case m.Type == "executing" && m.Data["node"] == nil:
			d := time.Since(t0)
			if failure != nil {
				return 0, failure
			}
			// Each sample starts on a quiet machine: what the cache still
			// writes in the background (the engine's marshalling, then the
			// store's hashing, files and index commit) is waited for,
			// untimed (and kept).
			t1 := time.Now()
			b.app.Engine.Wait()
			if b.app.Cache != nil {
				_ = b.app.Cache.Flush()
			}
			b.drain = time.Since(t1)
			return d, nil
		}
	}
}

// runEngine runs a native workflow on the engine directly, without the server.
func (b *benchServer) runEngine(wf string) (time.Duration, error) {
	w, err := parseWorkflow(wf)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	plan, err := b.app.Catalog.Compile(w, nil)
	if err != nil {
		return 0, err
	}
	if _, err := b.app.Engine.Run(context.Background(), plan, engine.RunOptions{PromptID: "bench"}); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// apiPrompt builds a ComfyUI API prompt: nodes maps an id to its class and
// inputs, where a link is written [source id, output index].
type apiPrompt map[string]any

func (p apiPrompt) node(id, class string, inputs map[string]any) {
	p[id] = map[string]any{"class_type": class, "inputs": inputs}
}

// sinks are the nodes no other node reads from, sorted.
func (p apiPrompt) sinks() []string {
	read := map[string]bool{}
	for _, n := range p {
		inputs, _ := n.(map[string]any)["inputs"].(map[string]any)
		for _, v := range inputs {
			if l, ok := v.([]any); ok && len(l) == 2 {
				if id, ok := l[0].(string); ok {
					read[id] = true
				}
			}
		}
	}
	out := []string{}
	for id := range p {
		if !read[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func link(id string, output int) []any { return []any{id, output} }

// chainPrompt is first, then n-1 nodes of class next, each linked to the one
// before through input in.
func chainPrompt(n int, first string, firstInputs map[string]any, next, in string, nextInputs map[string]any) apiPrompt {
	p := apiPrompt{}
	p.node("n0", first, firstInputs)
	for i := 1; i < n; i++ {
		inputs := map[string]any{in: link(fmt.Sprintf("n%d", i-1), 0)}
		for k, v := range nextInputs {
			inputs[k] = v
		}
		p.node(fmt.Sprintf("n%d", i), next, inputs)
	}
	return p
}

// sample runs f n times and returns the sorted durations.
func sample(n int, f func(i int) (time.Duration, error)) (samples, error) {
	var d samples
	for i := 0; i < n; i++ {
		t, err := f(i)
		if err != nil {
			return nil, err
		}
		d = append(d, t)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d, nil
}

type samples []time.Duration

// median of the samples, in any order.
func (s samples) median() time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

// lockedBuffer keeps what plugins and the server log, shown when a figure fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}

var _ io.Writer = (*lockedBuffer)(nil)

var errSkip = errors.New("skipped")
