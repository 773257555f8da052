package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
)

// deviceInput is the input by which a node chooses where onnxruntime runs
// (the face0 pack's EncodeText, Face0Sampler and Decode have it).
const deviceInput = "device"

// applyDevice sets the device input of every node of w whose type has one
// (`face0 run --device cuda`). It is a literal in the workflow, so the
// choice is part of the cache key and of the workflow a saved image
// carries. A device no node takes is an error, as is a workflow that has
// no node to take it.
func applyDevice(w *workflow.Workflow, inputsOf func(nodeType string) ([]string, bool), device string) error {
	if device == "" {
		return nil
	}
	var set []string
	for i := range w.Nodes {
		n := &w.Nodes[i]
		inputs, ok := inputsOf(n.Type)
		if !ok {
			continue // Compile reports unknown types
		}
		for _, in := range inputs {
			if in != deviceInput {
				continue
			}
			if n.Inputs == nil {
				n.Inputs = map[string]workflow.Input{}
			}
			n.Inputs[deviceInput] = workflow.Literal(device)
			set = append(set, n.ID)
		}
	}
	if len(set) == 0 {
		return fmt.Errorf("--device %s: no node of this workflow runs a model on a device", device)
	}
	fmt.Fprintf(os.Stderr, "device %s: %s\n", device, strings.Join(set, ", "))
	return nil
}

// catalogInputs lists a node type's inputs from the local catalog.
func catalogInputs(cat *engine.Catalog) func(string) ([]string, bool) {
	return func(nodeType string) ([]string, bool) {
		def, ok := cat.Lookup(nodeType)
		if !ok {
			return nil, false
		}
		var names []string
		for _, in := range def.Spec.GetInputs() {
			names = append(names, in.GetName())
		}
		return names, true
	}
}
