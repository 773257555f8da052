package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
)

// remoteRun runs a workflow on a face0 server the way a ComfyUI script
// does: the inputs it names are uploaded (POST /upload/image) when the
// server reads another input folder, the workflow is queued (POST /prompt)
// with a websocket open for its progress, and the saved images are fetched
// (GET /view) into the CLI's output folder when the server writes
// elsewhere. The server keeps its own copies, in its history as any
// client's prompt.
type remoteRun struct {
	base, token string
	wf          *workflow.Workflow
	server      serverRecord
	input, out  string   // the CLI's folders, absolute
	outputs     []string // --outputs: partial_execution_targets
	sink        events.Sink
	log         io.Writer
	hc          *http.Client
}

// remoteResult is what the run produced: the files written locally.
type remoteResult struct {
	files []string // "node: path" lines, sorted
}

// errRemoteFailed wraps a run the server reports as failed.
var errRemoteFailed = errors.New("the run failed on the server")

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *remoteRun) request(ctx context.Context, method, p string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+p, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	return r.hc.Do(req)
}

// apiError turns a ComfyUI-shaped error answer into an error: the details
// (face0's full validation message) when there are some, else the message.
func apiError(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error struct {
			Message string `json:"message"`
			Details string `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && (e.Error.Details != "" || e.Error.Message != "") {
		if e.Error.Details != "" {
			return errors.New(e.Error.Details)
		}
		return fmt.Errorf("%s: %s", what, e.Error.Message)
	}
	return fmt.Errorf("%s: the server answered %s: %s", what, resp.Status, strings.TrimSpace(string(b)))
}

func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	ai, err1 := os.Stat(a)
	bi, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}

// uploadInputs uploads every image the workflow's literals name in the
// CLI's input folder, when the server reads another folder, and rewrites
// the literal to the name the server gave it (a different file of the same
// name already there keeps its name; the upload becomes "name (1).png").
func (r *remoteRun) uploadInputs(ctx context.Context) error {
	if sameDir(r.input, r.server.Input) {
		return nil
	}
	for i := range r.wf.Nodes {
		n := &r.wf.Nodes[i]
		names := make([]string, 0, len(n.Inputs))
		for name := range n.Inputs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			s, ok := n.Inputs[name].Value.(string)
			if !ok || s == "" || filepath.IsAbs(s) || strings.ContainsRune(s, 0) {
				continue
			}
			rel := filepath.Clean(filepath.FromSlash(s))
			if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				continue
			}
			local := filepath.Join(r.input, rel)
			st, err := os.Stat(local)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(local)
			if err != nil {
				return fmt.Errorf("read input %s: %w", local, err)
			}
			switch http.DetectContentType(data) {
			case "image/png", "image/jpeg", "image/gif", "image/webp":
			default:
				fmt.Fprintf(r.log, "face0: %s.%s names %s, which is not an image the server can receive; the server looks for it in its own input folder %s\n", n.ID, name, local, r.server.Input)
				continue
			}
			got, err := r.upload(ctx, filepath.ToSlash(filepath.Dir(rel)), filepath.Base(rel), data)
			if err != nil {
				return fmt.Errorf("upload %s for %s.%s: %w", local, n.ID, name, err)
			}
			if got != filepath.ToSlash(rel) {
				fmt.Fprintf(r.log, "face0: the server's input folder has another %s; %s.%s uses the upload %s\n", filepath.ToSlash(rel), n.ID, name, got)
			}
			n.Inputs[name] = workflow.Literal(got)
		}
	}
	return nil
}

func (r *remoteRun) upload(ctx context.Context, subfolder, name string, data []byte) (string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("image", name)
	if err != nil {
		return "", err
	}
	fw.Write(data)
	if subfolder != "." {
		mw.WriteField("subfolder", subfolder)
	}
	mw.WriteField("type", "input")
	mw.Close()
	resp, err := r.request(ctx, http.MethodPost, "/upload/image", &body, mw.FormDataContentType())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", apiError("upload", resp)
	}
	var got struct {
		Name      string `json:"name"`
		Subfolder string `json:"subfolder"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Name == "" {
		return "", fmt.Errorf("upload: unexpected answer (%v)", err)
	}
	return path.Join(got.Subfolder, got.Name), nil
}

// wsData holds the fields of the websocket messages a run sends.
type wsData struct {
	PromptID  string         `json:"prompt_id"`
	Node      *string        `json:"node"`
	NodeID    string         `json:"node_id"`
	NodeType  string         `json:"node_type"`
	Nodes     []string       `json:"nodes"`
	Value     int64          `json:"value"`
	Max       int64          `json:"max"`
	Output    map[string]any `json:"output"`
	Exception string         `json:"exception_message"`
	Executed  []string       `json:"executed"`
	Level     string         `json:"level"`
	Message   string         `json:"message"`
}

// event turns one of the run's websocket messages into the engine's event,
// so the CLI's progress bars, log lines and --json print it as they print a
// local run.
func (r *remoteRun) event(typ string, d wsData, started map[string]time.Time) (events.Event, bool) {
	now := time.Now()
	e := events.Event{Type: events.Type(typ), PromptID: d.PromptID, Time: now}
	node := func(id string) {
		e.Node = id
		if n := r.wf.Node(id); n != nil {
			e.NodeType = n.Type
		}
	}
	switch e.Type {
	case events.ExecutionStart, events.Success:
	case events.Cached:
		if len(d.Nodes) == 0 {
			return e, false // the server always reports the cached set, even when empty
		}
		e.Nodes = d.Nodes
	case events.Executing:
		if d.Node == nil {
			return e, false
		}
		node(*d.Node)
		started[e.Node] = now
	case events.Progress:
		if d.Node != nil {
			node(*d.Node)
		}
		e.Value, e.Max = d.Value, d.Max
	case events.Executed:
		if d.Node != nil {
			node(*d.Node)
		}
		e.Output = d.Output
		if t, ok := started[e.Node]; ok {
			e.Duration = now.Sub(t)
		}
	case events.Error:
		node(d.NodeID)
		e.Err, e.Completed = d.Exception, d.Executed
	case events.Interrupted:
		node(d.NodeID)
		e.Completed = d.Executed
	case "face0_log":
		e.Type = events.Log
		if d.Node != nil {
			node(*d.Node)
		}
		e.Level, e.Message = d.Level, d.Message
	default:
		return e, false
	}
	return e, true
}

// run queues the workflow and follows it to its end. On ctx's end (a
// signal) it takes the prompt off the queue, or interrupts it, and waits
// briefly for the server to confirm.
func (r *remoteRun) run(ctx context.Context) (*remoteResult, error) {
	if err := r.uploadInputs(ctx); err != nil {
		return nil, err
	}
	clientID, promptID := "face0-cli-"+newID(), newID()

	// The websocket first, so that no message of the run is missed.
	msgs := make(chan []byte, 256)
	stop := make(chan struct{})
	defer close(stop)
	wsURL := "ws" + strings.TrimPrefix(r.base, "http") + "/ws?clientId=" + url.QueryEscape(clientID)
	hdr := http.Header{}
	if r.token != "" {
		hdr.Set("Authorization", "Bearer "+r.token)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, _, err := websocket.DefaultDialer.DialContext(dctx, wsURL, hdr)
	cancel()
	if err != nil {
		fmt.Fprintf(r.log, "face0: no websocket (%v); following the run through /history, without progress\n", err)
		close(msgs)
	} else {
		defer conn.Close()
		go func() {
			defer close(msgs)
			for {
				kind, b, err := conn.ReadMessage()
				if err != nil {
					return // closed: the loop follows the run through /history
				}
				if kind != websocket.TextMessage {
					continue // previews
				}
				select {
				case msgs <- b:
				case <-stop:
					return
				}
			}
		}()
	}

	wfJSON, err := r.wf.Marshal()
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"prompt": json.RawMessage(wfJSON), "client_id": clientID, "prompt_id": promptID,
		"partial_execution_targets": r.outputs})
	resp, err := r.request(ctx, http.MethodPost, "/prompt", bytes.NewReader(body), "application/json")
	if err != nil {
		return nil, fmt.Errorf("queue the workflow on %s: %w", r.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := apiError("queue the workflow", resp)
		resp.Body.Close()
		return nil, err
	}
	resp.Body.Close()

	started := map[string]time.Time{}
	var stopAsked time.Time
	began := false // the server started the run (else it still waits in the queue)
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	done := ctx.Done()
	for {
		select {
		case <-done:
			// Stop it: off the queue if it waits, interrupted if it runs.
			done = nil
			stopAsked = time.Now()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if resp, err := r.request(sctx, http.MethodPost, "/queue", strings.NewReader(`{"delete":["`+promptID+`"]}`), "application/json"); err == nil {
				resp.Body.Close()
			}
			if resp, err := r.request(sctx, http.MethodPost, "/interrupt", strings.NewReader(`{"prompt_id":"`+promptID+`"}`), "application/json"); err == nil {
				resp.Body.Close()
			}
			cancel()
		case b, ok := <-msgs:
			if !ok {
				msgs = nil // follow through /history from now on
				continue
			}
			var m struct {
				Type string `json:"type"`
				Data wsData `json:"data"`
			}
			if json.Unmarshal(b, &m) != nil || m.Data.PromptID != promptID {
				continue
			}
			e, ok := r.event(m.Type, m.Data, started)
			if !ok {
				continue
			}
			r.sink.Emit(e)
			switch e.Type {
			case events.ExecutionStart:
				began = true
			case events.Success:
				return r.fetchOutputs(context.WithoutCancel(ctx), promptID)
			case events.Error:
				return nil, fmt.Errorf("%w: node %s (%s): %s", errRemoteFailed, e.Node, e.NodeType, e.Err)
			case events.Interrupted:
				return nil, errors.New("interrupted on the server")
			}
		case <-poll.C:
			if !stopAsked.IsZero() {
				// A prompt taken off the queue sends nothing more; one
				// interrupted while running leaves the queue as it stops.
				if r.notQueued(promptID) {
					if !began {
						return nil, errors.New("interrupted: taken off the server's queue before it ran")
					}
					return nil, errors.New("interrupted on the server")
				}
				if time.Since(stopAsked) > 10*time.Second {
					return nil, errors.New("interrupted here; the server did not confirm that the run stopped (POST /interrupt)")
				}
				continue
			}
			if msgs != nil {
				continue // the websocket reports the end
			}
			if res, err, finished := r.checkHistory(context.WithoutCancel(ctx), promptID); finished {
				return res, err
			}
		}
	}
}

// checkHistory looks the run up in /history; finished is false while it
// is not there yet.
func (r *remoteRun) checkHistory(ctx context.Context, promptID string) (res *remoteResult, err error, finished bool) {
	h, err := r.history(ctx, promptID)
	if err != nil || h == nil {
		return nil, nil, false
	}
	if !h.Status.Completed {
		msg := "failed"
		for _, m := range h.Status.Messages {
			var typ string
			var d wsData
			if len(m) == 2 && json.Unmarshal(m[0], &typ) == nil && json.Unmarshal(m[1], &d) == nil {
				switch typ {
				case "execution_error":
					msg = fmt.Sprintf("node %s (%s): %s", d.NodeID, d.NodeType, d.Exception)
				case "execution_interrupted":
					msg = "interrupted"
				}
			}
		}
		return nil, fmt.Errorf("%w: %s", errRemoteFailed, msg), true
	}
	res, err = r.fetchOutputs(ctx, promptID)
	return res, err, true
}

// notQueued reports whether the prompt is neither pending nor running.
func (r *remoteRun) notQueued(promptID string) bool {
	resp, err := r.request(context.Background(), http.MethodGet, "/queue", nil, "")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode == http.StatusOK && !bytes.Contains(b, []byte(`"`+promptID+`"`))
}

type historyEntry struct {
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  struct {
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	} `json:"status"`
}

func (r *remoteRun) history(ctx context.Context, promptID string) (*historyEntry, error) {
	resp, err := r.request(ctx, http.MethodGet, "/history/"+url.PathEscape(promptID), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError("history", resp)
	}
	var all map[string]historyEntry
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	h, ok := all[promptID]
	if !ok {
		return nil, nil
	}
	return &h, nil
}

// fetchOutputs lists the run's saved files from its history entry and,
// when the server writes into another folder than the CLI's --out, copies
// them there through /view.
func (r *remoteRun) fetchOutputs(ctx context.Context, promptID string) (*remoteResult, error) {
	var h *historyEntry
	var err error
	// The entry is written as the run ends; give it a moment (a bound on a
	// wait, generous for a loaded machine).
	for i := 0; i < 600; i++ {
		if h, err = r.history(ctx, promptID); err != nil || h != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("the run succeeded but the server has no history entry for %s", promptID)
	}
	same := sameDir(r.out, r.server.Output)
	res := &remoteResult{}
	nodes := make([]string, 0, len(h.Outputs))
	for id := range h.Outputs {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	for _, id := range nodes {
		for _, raw := range h.Outputs[id] {
			var items []struct {
				Filename  string `json:"filename"`
				Subfolder string `json:"subfolder"`
				Type      string `json:"type"`
			}
			if json.Unmarshal(raw, &items) != nil {
				continue
			}
			for _, it := range items {
				if it.Type != "output" || it.Filename == "" {
					continue
				}
				dst := filepath.Join(r.out, filepath.FromSlash(it.Subfolder), it.Filename)
				if !same {
					if err := r.download(ctx, it.Filename, it.Subfolder, dst); err != nil {
						return res, err
					}
				}
				res.files = append(res.files, fmt.Sprintf("%s: %s", id, dst))
			}
		}
	}
	return res, nil
}

func (r *remoteRun) download(ctx context.Context, name, subfolder, dst string) error {
	q := url.Values{"filename": {name}, "subfolder": {subfolder}, "type": {"output"}}
	resp, err := r.request(ctx, http.MethodGet, "/view?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError("fetch "+path.Join(subfolder, name), resp)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("fetch %s: %w", path.Join(subfolder, name), err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// nodeInputs lists each node type's inputs as the server's /object_info
// has them (ComfyUI's shape: class -> input -> required/optional -> name),
// so that --device is set by what the server runs, not by this binary.
func (r *remoteRun) nodeInputs(ctx context.Context) (func(string) ([]string, bool), error) {
	resp, err := r.request(ctx, http.MethodGet, "/object_info", nil, "")
	if err != nil {
		return nil, fmt.Errorf("the server's node list: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError("the server's node list", resp)
	}
	var info map[string]struct {
		Input map[string]map[string]json.RawMessage `json:"input"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("the server's node list: %w", err)
	}
	return func(nodeType string) ([]string, bool) {
		c, ok := info[nodeType]
		if !ok {
			return nil, false
		}
		var names []string
		for _, group := range c.Input {
			for name := range group {
				names = append(names, name)
			}
		}
		return names, true
	}, nil
}
