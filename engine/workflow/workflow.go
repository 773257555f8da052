// Package workflow is the saved form of a node graph: the native, versioned JSON
// format (with its published JSON Schema), and the ComfyUI API prompt format,
// which is accepted and converted.
//
// A workflow says which nodes exist, their literal inputs and their links. It
// knows nothing about what node types exist: checking types and links against
// node specs is the engine's job (engine.Validate).
package workflow

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Version is the native format version this package reads and writes.
const Version = 1

// MaxSize bounds a workflow file. Real graphs are kilobytes; images and weights
// never live inside a workflow.
const MaxSize = 32 << 20

// Schema is the published JSON Schema of the native format.
//
//go:embed schema.json
var Schema []byte

// Workflow is a node graph.
type Workflow struct {
	Version     int             `json:"version"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Nodes       []Node          `json:"nodes"`
	UI          json.RawMessage `json:"ui,omitempty"`
}

// Node is one node of the graph.
type Node struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Title string `json:"title,omitempty"`
	// Mode is empty for a node that runs, ModeMuted or ModeBypassed
	// (ComfyUI's "never" and "bypass" modes).
	Mode   string           `json:"mode,omitempty"`
	Inputs map[string]Input `json:"inputs,omitempty"`
	UI     json.RawMessage  `json:"ui,omitempty"`
}

// Node modes. A muted node does not run: links from it are dropped, so the
// inputs they fed take their defaults (or are missing). A bypassed node does
// not run either: a link from one of its outputs is taken from the input it
// was given of the same type, as if the node were not there.
const (
	ModeMuted    = "muted"
	ModeBypassed = "bypassed"
)

// Input is either a literal value or a link to another node's output.
type Input struct {
	// Link is set when the input is wired to another node.
	Link *Link
	// Value is the literal, as decoded with json.Decoder.UseNumber: nil, bool,
	// json.Number, string, []any or map[string]any.
	Value any
}

// Link points at an output of another node, by name or by position.
type Link struct {
	Node string
	// Output is the output's name; empty when the link gives a position (Index).
	Output string
	// Index is the output's position when Output is empty (ComfyUI style).
	Index int
}

func (l Link) String() string {
	if l.Output != "" {
		return l.Node + "." + l.Output
	}
	return l.Node + "[" + strconv.Itoa(l.Index) + "]"
}

// Literal returns an input holding v.
func Literal(v any) Input { return Input{Value: v} }

// LinkTo returns an input linked to node's named output.
func LinkTo(node, output string) Input { return Input{Link: &Link{Node: node, Output: output}} }

// MarshalJSON writes a link as {"node", "output"} and a literal as itself.
func (in Input) MarshalJSON() ([]byte, error) {
	if in.Link != nil {
		var out any = in.Link.Output
		if in.Link.Output == "" {
			out = in.Link.Index
		}
		return json.Marshal(map[string]any{"node": in.Link.Node, "output": out})
	}
	return json.Marshal(in.Value)
}

// UnmarshalJSON reads a link (an object with exactly "node" and "output") or a literal.
func (in *Input) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	*in = Input{Value: v}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 2 {
		return nil
	}
	node, ok1 := m["node"].(string)
	out, ok2 := m["output"]
	if !ok1 || !ok2 {
		return nil
	}
	switch o := out.(type) {
	case string:
		in.Link = &Link{Node: node, Output: o}
	case json.Number:
		i, err := strconv.Atoi(o.String())
		if err != nil || i < 0 {
			return fmt.Errorf("link to node %q: output index %s is not a non-negative integer", node, o)
		}
		in.Link = &Link{Node: node, Index: i}
	default:
		return nil
	}
	in.Value = nil
	return nil
}

// Format names the format a workflow was read from.
type Format string

const (
	Native  Format = "face0"
	ComfyUI Format = "comfyui-api"
)

// ReadFile loads a workflow from a file in either format.
func ReadFile(path string) (*Workflow, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("read workflow: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read workflow %s: %w", path, err)
	}
	parse := Parse
	if IsPNG(data) {
		parse = FromPNG
	}
	w, format, err := parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("workflow %s: %w", path, err)
	}
	return w, format, nil
}

// Parse reads a workflow in the native format or the ComfyUI API prompt format,
// telling them apart by shape: native files have "version" and "nodes".
func Parse(data []byte) (*Workflow, Format, error) {
	if len(data) > MaxSize {
		return nil, "", fmt.Errorf("workflow is larger than %d MiB; workflows hold graphs, not data", MaxSize>>20)
	}
	if err := checkEncoding(data); err != nil {
		return nil, "", err
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8's byte-order mark marks nothing
	var top any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&top); err != nil {
		return nil, "", fmt.Errorf("not valid JSON: %w", describeJSONError(data, err))
	}
	if d.More() {
		return nil, "", errors.New("not valid JSON: extra data after the top-level value")
	}
	obj, ok := top.(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("a workflow must be a JSON object, got %s", jsonKind(top))
	}
	if isComfyEditor(obj) {
		return nil, "", errors.New(`this is a ComfyUI editor workflow (nodes with positions and widget values, links by number): open it in the face0 editor, which converts it (its Load button, or drop the file on the canvas), or export it from ComfyUI in API format ("Save (API Format)", "Export (API)") and run that`)
	}
	if _, hasVersion := obj["version"]; hasVersion || obj["nodes"] != nil {
		w, err := parseNative(obj)
		return w, Native, err
	}
	if looksLikeComfyPrompt(obj) {
		w, err := fromComfyPrompt(obj)
		return w, ComfyUI, err
	}
	return nil, "", errors.New(`not a workflow: expected a face0 workflow ({"version": 1, "nodes": [...]}) or a ComfyUI API prompt ({"id": {"class_type": ..., "inputs": {...}}})`)
}

func parseNative(obj map[string]any) (*Workflow, error) {
	if err := checkLinks(obj); err != nil {
		return nil, err
	}
	if err := validateSchema(obj); err != nil {
		return nil, err
	}
	// The schema has passed, so re-encoding and decoding into the typed structs
	// cannot fail on shape; it does keep numbers exact (json.Number).
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var w Workflow
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(w.Nodes))
	for _, n := range w.Nodes {
		if seen[n.ID] {
			return nil, fmt.Errorf("node id %q is used twice; ids must be unique", n.ID)
		}
		seen[n.ID] = true
	}
	return &w, nil
}

var compiledSchema = func() *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		panic("workflow: embedded schema is not JSON: " + err.Error())
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("workflow.json", doc); err != nil {
		panic("workflow: " + err.Error())
	}
	return c.MustCompile("workflow.json")
}()

func validateSchema(obj map[string]any) error {
	// The version gets its own message: it is the most common mismatch and the
	// schema's "const" error would not say what to do.
	switch v := obj["version"].(type) {
	case json.Number:
		if v.String() != strconv.Itoa(Version) {
			return fmt.Errorf("workflow version %s is not supported: this face0 reads version %d (upgrade face0 for newer files)", v, Version)
		}
	case nil:
		return fmt.Errorf(`workflow has no "version": add "version": %d`, Version)
	default:
		return fmt.Errorf(`workflow "version" must be the number %d, got %s`, Version, jsonKind(v))
	}
	if err := compiledSchema.Validate(any(obj)); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return &SchemaError{Causes: flatten(ve)}
		}
		return err
	}
	return nil
}

// SchemaError lists where a file breaks the workflow schema.
type SchemaError struct {
	Causes []SchemaCause
}

// SchemaCause is one violation: where (a JSON pointer) and what.
type SchemaCause struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *SchemaError) Error() string {
	var b strings.Builder
	b.WriteString("workflow does not match the format (schema version 1):")
	for i, c := range e.Causes {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Causes)-10)
			break
		}
		p := c.Path
		if p == "" {
			p = "(top level)"
		}
		fmt.Fprintf(&b, "\n  at %s: %s", p, c.Message)
	}
	return b.String()
}

// flatten keeps the leaves of a validation error tree: the specific reasons.
func flatten(ve *jsonschema.ValidationError) []SchemaCause {
	var out []SchemaCause
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, SchemaCause{Path: "/" + strings.Join(e.InstanceLocation, "/"), Message: leafMessage(e)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	if len(out) > 0 && out[0].Path == "/" {
		out[0].Path = ""
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func leafMessage(e *jsonschema.ValidationError) string {
	// ValidationError.Error() includes the location prefix; keep only the reason.
	msg := e.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "jsonschema") {
		msg = msg[i+2:]
	}
	msg = strings.TrimPrefix(msg, "at '"+"/"+strings.Join(e.InstanceLocation, "/")+"': ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// Marshal writes the native format, indented, with stable key order.
func (w *Workflow) Marshal() ([]byte, error) {
	cp := *w
	cp.Version = Version
	if cp.Nodes == nil {
		cp.Nodes = []Node{}
	}
	b, err := json.MarshalIndent(&cp, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteFile saves the native format atomically (temp file, then rename), so a
// crash never leaves a half-written workflow.
func (w *Workflow) WriteFile(path string) error {
	b, err := w.Marshal()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Node returns the node with the given id, or nil.
func (w *Workflow) Node(id string) *Node {
	for i := range w.Nodes {
		if w.Nodes[i].ID == id {
			return &w.Nodes[i]
		}
	}
	return nil
}

// Clone returns a deep copy, so that overrides (--set) never touch the original.
func (w *Workflow) Clone() *Workflow {
	b, err := json.Marshal(w)
	if err != nil {
		panic(err) // a loaded workflow always marshals
	}
	var c Workflow
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// describeJSONError adds line and column to syntax errors.
func describeJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(data, se.Offset)
		return fmt.Errorf("line %d, column %d: %v", line, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		line, col := position(data, te.Offset)
		return fmt.Errorf("line %d, column %d: %v", line, col, err)
	}
	return err
}

func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line = 1 + bytes.Count(data[:off], []byte{'\n'})
	col = int(off) - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// checkEncoding refuses UTF-16 text, which JSON readers take for garbage,
// with what to do.
func checkEncoding(data []byte) error {
	utf16 := bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) ||
		// Without a mark: ASCII text with every other byte zero.
		(len(data) >= 4 && data[0] != 0 && data[1] == 0 && data[2] != 0 && data[3] == 0) ||
		(len(data) >= 4 && data[0] == 0 && data[1] != 0 && data[2] == 0 && data[3] != 0)
	if utf16 {
		return errors.New("the file is UTF-16 text (as some Windows editors save it): save it as UTF-8 and load it again")
	}
	return nil
}

// isComfyEditor tells ComfyUI's editor files (schema 0.4, with
// last_node_id, and 1, with state) from native workflows, which share
// "version" and "nodes" with the newer one.
func isComfyEditor(obj map[string]any) bool {
	if _, ok := obj["last_node_id"]; ok {
		return true
	}
	if _, ok := obj["state"].(map[string]any); ok {
		return true
	}
	nodes, _ := obj["nodes"].([]any)
	for _, n := range nodes {
		m, _ := n.(map[string]any)
		_, numeric := m["id"].(json.Number)
		_, widgets := m["widgets_values"]
		_, inputList := m["inputs"].([]any)
		if numeric || widgets || inputList {
			return true
		}
	}
	return false
}

// checkLinks words a broken link as one: an object that names a node but
// whose output is missing or not an index (the schema alone would call it
// a value that matches nothing).
func checkLinks(obj map[string]any) error {
	nodes, _ := obj["nodes"].([]any)
	var causes []SchemaCause
	for i, n := range nodes {
		m, _ := n.(map[string]any)
		inputs, _ := m["inputs"].(map[string]any)
		for _, name := range sortedNames(inputs) {
			link, _ := inputs[name].(map[string]any)
			node, isLink := link["node"].(string)
			if !isLink {
				continue
			}
			where := fmt.Sprintf("/nodes/%d/inputs/%s", i, name)
			out, has := link["output"]
			switch o := out.(type) {
			case nil:
				if !has {
					causes = append(causes, SchemaCause{where, fmt.Sprintf(`the link to node %q has no "output": give the output's name, or its position (0 for the first output)`, node)})
				}
			case json.Number:
				if v, err := strconv.Atoi(o.String()); err != nil || v < 0 {
					causes = append(causes, SchemaCause{where, fmt.Sprintf(`the link to node %q has output index %s: an index is a whole number, 0 for the first output (or give the output's name)`, node, o)})
				}
			}
		}
	}
	if len(causes) > 0 {
		return &SchemaError{Causes: causes}
	}
	return nil
}

func sortedNames(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
