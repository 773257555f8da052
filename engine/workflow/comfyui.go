package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
)

// looksLikeComfyPrompt reports whether every entry is a node with a class_type,
// which is the shape of ComfyUI's API prompt ("Save (API Format)").
func looksLikeComfyPrompt(obj map[string]any) bool {
	if len(obj) == 0 {
		return false
	}
	for _, v := range obj {
		n, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := n["class_type"]; !ok {
			return false
		}
	}
	return true
}

var (
	idRE    = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	typeRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:/ +-]{0,127}$`) // schema.json's node type
	inputRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ .-]{0,63}$`)     // and input name
)

// FromComfyPrompt converts a ComfyUI API prompt, already decoded with UseNumber.
// Links there are two-element arrays ["node id", output index].
func fromComfyPrompt(obj map[string]any) (*Workflow, error) {
	ids := make([]string, 0, len(obj))
	for id := range obj {
		ids = append(ids, id)
	}
	// Numeric ids in numeric order, the way ComfyUI shows them.
	sort.Slice(ids, func(i, j int) bool {
		a, ea := strconv.Atoi(ids[i])
		b, eb := strconv.Atoi(ids[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
	var errs []error
	w := &Workflow{Version: Version}
	for _, id := range ids {
		n := obj[id].(map[string]any)
		if !idRE.MatchString(id) {
			errs = append(errs, fmt.Errorf("node id %q: use 1-64 letters, digits, '_', '.', ':' or '-'", id))
			continue
		}
		ct, ok := n["class_type"].(string)
		if !ok || ct == "" {
			errs = append(errs, fmt.Errorf("node %s: class_type must be a non-empty string", id))
			continue
		}
		if !typeRE.MatchString(ct) {
			// The native format's rule, so that the converted workflow
			// saves and loads again.
			errs = append(errs, fmt.Errorf("node %s: class_type %q is not a node type name (a letter or '_', then up to 127 letters, digits and _.:/ +-)", id, ct))
			continue
		}
		node := Node{ID: id, Type: ct, Inputs: map[string]Input{}}
		if meta, ok := n["_meta"].(map[string]any); ok {
			if t, ok := meta["title"].(string); ok {
				node.Title = t
			}
		}
		inputs, ok := n["inputs"].(map[string]any)
		if n["inputs"] != nil && !ok {
			errs = append(errs, fmt.Errorf("node %s: inputs must be an object", id))
			continue
		}
		for name, v := range inputs {
			if !inputRE.MatchString(name) {
				errs = append(errs, fmt.Errorf("node %s: input name %q is not one (a letter or '_', then up to 63 letters, digits and _ .-)", id, name))
				continue
			}
			if l, ok := comfyLink(v); ok {
				node.Inputs[name] = Input{Link: l}
			} else if msg := badComfyLink(v, obj); msg != "" {
				errs = append(errs, fmt.Errorf("node %s input %s: %s", id, name, msg))
			} else {
				node.Inputs[name] = Input{Value: v}
			}
		}
		w.Nodes = append(w.Nodes, node)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return w, nil
}

func comfyLink(v any) (*Link, bool) {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return nil, false
	}
	node, ok := arr[0].(string)
	if !ok {
		return nil, false
	}
	num, ok := arr[1].(json.Number)
	if !ok {
		return nil, false
	}
	i, err := strconv.Atoi(num.String())
	if err != nil || i < 0 {
		return nil, false
	}
	return &Link{Node: node, Index: i}, true
}

// ToComfyPrompt writes the graph as a ComfyUI API prompt. Links by name need the
// output's position, which only node specs know, so the caller passes outputIndex.
func (w *Workflow) ToComfyPrompt(outputIndex func(nodeType, output string) (int, bool)) (map[string]any, error) {
	out := make(map[string]any, len(w.Nodes))
	for _, n := range w.Nodes {
		inputs := map[string]any{}
		for name, in := range n.Inputs {
			if in.Link == nil {
				inputs[name] = in.Value
				continue
			}
			idx := in.Link.Index
			if in.Link.Output != "" {
				src := w.Node(in.Link.Node)
				if src == nil {
					return nil, fmt.Errorf("node %s input %s: links to missing node %q", n.ID, name, in.Link.Node)
				}
				i, ok := outputIndex(src.Type, in.Link.Output)
				if !ok {
					return nil, fmt.Errorf("node %s input %s: %s has no output %q", n.ID, name, src.Type, in.Link.Output)
				}
				idx = i
			}
			inputs[name] = []any{in.Link.Node, idx}
		}
		entry := map[string]any{"class_type": n.Type, "inputs": inputs}
		if n.Title != "" {
			entry["_meta"] = map[string]any{"title": n.Title}
		}
		out[n.ID] = entry
	}
	return out, nil
}

// badComfyLink words a list that is meant as a link ([node id, output
// index], its node in the prompt) but whose index is missing or not one.
func badComfyLink(v any, prompt map[string]any) string {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 || len(arr) > 2 {
		return ""
	}
	node, ok := arr[0].(string)
	if _, exists := prompt[node]; !ok || !exists {
		return ""
	}
	if len(arr) == 1 {
		return fmt.Sprintf("the link to node %q has no output index: a link is [node id, output index], 0 for the first output", node)
	}
	if num, ok := arr[1].(json.Number); ok {
		return fmt.Sprintf("the link to node %q has output index %s: an index is a whole number, 0 for the first output", node, num)
	}
	return ""
}
