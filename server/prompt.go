package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// getPrompt answers GET /prompt as ComfyUI does: how many prompts wait.
func (s *Server) getPrompt(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"exec_info": map[string]any{"queue_remaining": s.queueRemaining()}})
}

type promptRequest struct {
	Prompt    json.RawMessage `json:"prompt"`
	ClientID  string          `json:"client_id"`
	ExtraData map[string]any  `json:"extra_data"`
	Front     bool            `json:"front"`
	Number    *float64        `json:"number"`
	PromptID  string          `json:"prompt_id"`
	Targets   []string        `json:"partial_execution_targets"`
}

func (s *Server) postPrompt(w http.ResponseWriter, r *http.Request) {
	var req promptRequest
	if !readJSON(w, r, workflow.MaxSize+1<<20, &req) {
		return
	}
	if p := bytes.TrimSpace(req.Prompt); len(p) == 0 || bytes.Equal(p, []byte("null")) {
		writeError(w, http.StatusBadRequest, "no_prompt", `no prompt given: send {"prompt": {...}} with a ComfyUI API prompt or a face0 workflow`, nil)
		return
	}
	wf, format, err := workflow.Parse(req.Prompt)
	if err != nil {
		var se *workflow.SchemaError
		extra := map[string]any{}
		if errors.As(err, &se) {
			extra["causes"] = se.Causes
		}
		writeErrorDetails(w, http.StatusBadRequest, "invalid_prompt", "Invalid prompt: "+err.Error(), err.Error(), extra, nil)
		return
	}
	outputs := s.outputsToExecute(wf, req.Targets)
	// An API prompt without an output node is refused as ComfyUI refuses
	// it; so is a face0 workflow whose output nodes are all muted or
	// bypassed. A face0 workflow without any output node runs every node
	// nothing reads from, as `face0 run` does here and the engine does.
	if len(outputs) == 0 && s.typesKnown(wf) && (format == workflow.ComfyUI || s.hasOutputNode(wf)) {
		// ComfyUI's answer, node_errors an empty list.
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": map[string]any{"type": engine.KindNoOutputs, "message": "Prompt has no outputs",
				"details":    "the workflow has no output node that runs (SaveImage, PreviewImage, ...): add one, or name the nodes to run in partial_execution_targets (face0 run --outputs)",
				"extra_info": map[string]any{}},
			"node_errors": []any{},
		})
		return
	}
	if _, err := s.compile(r.Context(), wf, req.Targets); err != nil {
		var ve *engine.ValidationError
		if !errors.As(err, &ve) {
			writeErrorDetails(w, http.StatusBadRequest, "invalid_prompt", "Invalid prompt: "+err.Error(), err.Error(), nil, nil)
			return
		}
		nodeErrs := ve.NodeErrors()
		dependentOutputs(nodeErrs, wf, outputs)
		typ, msg := "prompt_outputs_failed_validation", "Prompt outputs failed validation"
		if len(nodeErrs) == 0 && len(ve.Problems) > 0 {
			typ, msg = ve.Problems[0].Kind, ve.Problems[0].Message
		}
		writeErrorDetails(w, http.StatusBadRequest, typ, msg, ve.Error(), nil, nodeErrs)
		return
	}
	id := req.PromptID
	if id == "" {
		id = newID()
	} else if !promptIDRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "invalid_prompt_id", "prompt_id must be 1-128 letters, digits, '_', '.', ':' or '-' (or leave it out)", nil)
		return
	}
	extra := req.ExtraData
	if extra == nil {
		extra = map[string]any{}
	}
	clientID := req.ClientID
	if clientID == "" {
		clientID, _ = extra["client_id"].(string)
	}
	if clientID != "" {
		extra["client_id"] = clientID
	}
	p := &queuedPrompt{
		ID: id, Prompt: append(json.RawMessage(nil), req.Prompt...), ExtraData: extra, ClientID: clientID,
		Outputs: outputs, Targets: req.Targets, Queued: time.Now(),
	}
	if err := s.store.enqueue(p, req.Number, req.Front); err != nil {
		if errors.Is(err, errDuplicateID) {
			writeError(w, http.StatusBadRequest, "duplicate_prompt_id", err.Error(), nil)
			return
		}
		writeError(w, http.StatusInternalServerError, "queue_failed", "could not store the prompt: "+err.Error(), nil)
		return
	}
	s.push(p)
	s.broadcastStatus()
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": p.Number, "node_errors": map[string]any{}})
}

// promptIDRE is what a client-chosen prompt id may be (ComfyUI clients send
// UUIDs; anything else of this shape is kept as given).
var promptIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// outputsToExecute is what ComfyUI lists in a queue item: the requested
// targets, else the workflow's output nodes.
func (s *Server) outputsToExecute(wf *workflow.Workflow, targets []string) []string {
	if len(targets) > 0 {
		return targets
	}
	out := []string{}
	for _, n := range wf.Nodes {
		if d, ok := s.catalog().Lookup(n.Type); ok && d.Spec.OutputNode && n.Mode == "" {
			out = append(out, n.ID)
		}
	}
	return out
}

// hasOutputNode reports whether the workflow has an output node (SaveImage
// and the like), running or not.
func (s *Server) hasOutputNode(wf *workflow.Workflow) bool {
	for _, n := range wf.Nodes {
		if d, ok := s.catalog().Lookup(n.Type); ok && d.Spec.OutputNode {
			return true
		}
	}
	return false
}

// typesKnown reports whether every node that runs is of a known type (else
// the unknown types are the problem to report, not a lack of outputs).
func (s *Server) typesKnown(wf *workflow.Workflow) bool {
	for _, n := range wf.Nodes {
		if _, ok := s.catalog().Lookup(n.Type); !ok && n.Mode != workflow.ModeMuted {
			return false
		}
	}
	return true
}

// dependentOutputs fills each node error's dependent_outputs, as ComfyUI
// does: the output nodes the failing node feeds, directly or not (itself,
// when it is one).
func dependentOutputs(nodeErrs map[string]any, wf *workflow.Workflow, outputs []string) {
	readers := map[string][]string{} // node -> nodes reading from it
	for _, n := range wf.Nodes {
		for _, in := range n.Inputs {
			if in.Link != nil {
				readers[in.Link.Node] = append(readers[in.Link.Node], n.ID)
			}
		}
	}
	isOutput := map[string]bool{}
	for _, o := range outputs {
		isOutput[o] = true
	}
	for id, e := range nodeErrs {
		entry, ok := e.(map[string]any)
		if !ok {
			continue
		}
		deps := []string{}
		seen := map[string]bool{id: true}
		for stack := []string{id}; len(stack) > 0; {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if isOutput[n] {
				deps = append(deps, n)
			}
			for _, r := range readers[n] {
				if !seen[r] {
					seen[r] = true
					stack = append(stack, r)
				}
			}
		}
		sort.Strings(deps)
		entry["dependent_outputs"] = deps
	}
}
