// Package port is the type system of node inputs and outputs.
//
// A port type is a name such as "IMAGE" or "INT", optionally with a parameter after
// a colon, "FACE_EMBEDDING:faceapi-128". The parameter narrows a type: an
// embedding from one face model's space must not reach a sampler trained on
// another, so two ports with different parameters do not connect. A port whose
// parameter is unknown until run time (empty) connects to any parameter.
package port

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Type is a port type, possibly parametrised ("FACE_EMBEDDING:faceapi-128").
type Type string

// The built-in types. Plugins may declare more (Registry.Declare).
const (
	Image         Type = "IMAGE"
	Mask          Type = "MASK"
	Face          Type = "FACE"
	FaceEmbedding Type = "FACE_EMBEDDING"
	Conditioning  Type = "CONDITIONING"
	Latent        Type = "LATENT"
	Model         Type = "MODEL"
	Int           Type = "INT"
	Float         Type = "FLOAT"
	String        Type = "STRING"
	Boolean       Type = "BOOLEAN"
	Enum          Type = "ENUM"
	// Any connects to every type; for generic nodes such as a preview of anything.
	Any Type = "*"
)

// Base is the type without its parameter.
func (t Type) Base() Type {
	if i := strings.IndexByte(string(t), ':'); i >= 0 {
		return t[:i]
	}
	return t
}

// Param is the parameter after the colon, or "".
func (t Type) Param() string {
	if i := strings.IndexByte(string(t), ':'); i >= 0 {
		return string(t[i+1:])
	}
	return ""
}

// WithParam returns the base type with parameter p (p == "" gives the base).
func (t Type) WithParam(p string) Type {
	if p == "" {
		return t.Base()
	}
	return t.Base() + Type(":"+p)
}

// Literal reports whether values of the type can be written inline in a
// workflow (as a widget in the editor) rather than only arriving over a link.
func (t Type) Literal() bool {
	switch t.Base() {
	case Int, Float, String, Boolean, Enum:
		return true
	}
	return false
}

// Assignable reports whether an output of type from may feed an input of type to,
// and if not, why.
func Assignable(from, to Type) (bool, string) {
	if from == Any || to == Any {
		return true, ""
	}
	fb, tb := from.Base(), to.Base()
	// An INT output may feed a FLOAT input; ComfyUI users wire seeds and sizes so.
	if fb != tb && !(fb == Int && tb == Float) && !(fb == String && tb == Enum) {
		return false, fmt.Sprintf("%s output cannot feed %s input", A(from), A(to))
	}
	fp, tp := from.Param(), to.Param()
	if fp != "" && tp != "" && fp != tp {
		return false, fmt.Sprintf("%s output cannot feed %s input: %q and %q are different spaces (use the model that matches, or re-embed the face)", A(from), A(to), fp, tp)
	}
	return true, ""
}

var nameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// Valid checks the shape of a type name.
func (t Type) Valid() error {
	if t == Any {
		return nil
	}
	if !nameRE.MatchString(string(t.Base())) {
		return fmt.Errorf("port type %q: name must be upper case letters, digits and underscores", t)
	}
	if strings.ContainsAny(t.Param(), " \t\n:") {
		return fmt.Errorf("port type %q: parameter must not contain spaces or colons", t)
	}
	return nil
}

// Info describes a type for editors.
type Info struct {
	Name        Type   `json:"name"`
	Description string `json:"description,omitempty"`
	Color       string `json:"color,omitempty"`
}

// Registry knows the declared types. The zero value is not usable; use NewRegistry.
type Registry struct {
	mu    sync.RWMutex
	types map[Type]Info
}

// NewRegistry returns a registry holding the built-in types.
func NewRegistry() *Registry {
	r := &Registry{types: map[Type]Info{}}
	for _, i := range builtins {
		r.types[i.Name] = i
	}
	return r
}

var builtins = []Info{
	{Image, "a batch of images, uint8 [B,H,W,C]", "#64b5f6"},
	{Mask, "a batch of masks, uint8 [B,H,W]", "#81c784"},
	{Face, "a detected face: box, score, landmarks and the aligned crop", "#ffb74d"},
	{FaceEmbedding, "a face identity vector tagged with its embedding space", "#f06292"},
	{Conditioning, "text encoder hidden states [B,77,D]", "#ffa931"},
	{Latent, "diffusion latents [B,C,H,W]", "#ff9cf9"},
	{Model, "a loaded model reference", "#b39ddb"},
	{Int, "an integer", "#9e9e9e"},
	{Float, "a number", "#9e9e9e"},
	{String, "text", "#9e9e9e"},
	{Boolean, "true or false", "#9e9e9e"},
	{Enum, "one of a fixed set of strings", "#9e9e9e"},
}

// Declare adds a plugin's type. Re-declaring a known type is fine (several
// plugins may share one); the first description wins.
func (r *Registry) Declare(i Info) error {
	if err := i.Name.Valid(); err != nil {
		return err
	}
	if i.Name.Param() != "" {
		return fmt.Errorf("port type %q: declare the base type, without a parameter", i.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.types[i.Name]; !ok {
		r.types[i.Name] = i
	}
	return nil
}

// Known reports whether t's base type is declared.
func (r *Registry) Known(t Type) bool {
	if t == Any {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.types[t.Base()]
	return ok
}

// All lists the declared types by name.
func (r *Registry) All() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.types))
	for _, i := range r.types {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// A puts "a" or "an" before a type name, for messages: an IMAGE, a STRING.
func A(t Type) string {
	if s := string(t); s != "" && strings.ContainsRune("AEIOUaeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + string(t)
}
