package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/port"
	pb "github.com/face0/face0/plugins/proto"
)

// objectInfo is /object_info, rendered once per catalog. It is the largest
// answer the editor fetches on each load (tens of KB for a few packs, far
// more with many plugins): it goes gzipped to clients that accept it, and
// with an ETag, so that a reload that finds the same catalog gets a 304.
type objectInfo struct {
	all     []byte
	byClass map[string]json.RawMessage
	etag    string

	gzOnce sync.Once
	gz     []byte // all, gzipped on first use
}

func (oi *objectInfo) gzipped() []byte {
	oi.gzOnce.Do(func() {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(oi.all)
		_ = zw.Close()
		oi.gz = b.Bytes()
	})
	return oi.gz
}

func buildObjectInfo(c *engine.Catalog) *objectInfo {
	oi := &objectInfo{byClass: map[string]json.RawMessage{}}
	all := map[string]json.RawMessage{}
	for _, d := range c.Nodes() {
		b, err := json.Marshal(nodeInfo(d))
		if err != nil {
			continue // a spec that does not encode is left out, not fatal
		}
		oi.byClass[d.Spec.Type] = b
		all[d.Spec.Type] = b
	}
	oi.all, _ = json.Marshal(all)
	sum := sha256.Sum256(oi.all)
	oi.etag = `"` + hex.EncodeToString(sum[:12]) + `"`
	return oi
}

func (s *Server) getObjectInfo(w http.ResponseWriter, r *http.Request) {
	// As ComfyUI does, each request sees the plugins' current specs, unless
	// they are slow to tell (see refresh.go).
	s.refreshForRequest(r)
	oi := s.specs.Load().info
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Revalidated on each use: a plugin may change the catalog any time.
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	body, etag := oi.all, oi.etag
	if acceptsGzip(r) {
		body, etag = oi.gzipped(), etag[:len(etag)-1]+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match with a 304 without a body.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// getObjectInfoOne answers {} for an unknown class, as ComfyUI does.
func (s *Server) getObjectInfoOne(w http.ResponseWriter, r *http.Request) {
	cls := r.PathValue("cls")
	s.refreshForRequest(r)
	b, ok := s.specs.Load().info.byClass[cls]
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{cls: b})
}

// nodeInfo is one node in ComfyUI's object_info shape, plus face0's own keys:
// face0_schema (the JSON Schema of the literal inputs) and face0_types (every
// port's full type, parameter included).
func nodeInfo(d engine.NodeDef) map[string]any {
	s := d.Spec
	required, optional := map[string]any{}, map[string]any{}
	var reqOrder, optOrder []string
	inTypes := map[string]string{}
	for _, in := range s.Inputs {
		inTypes[in.Name] = in.Type
		entry, hasDefault := comfyInput(in)
		// ComfyUI lists widget inputs that have a default as required: the
		// widget always holds a value.
		if in.Optional && !hasDefault {
			optional[in.Name] = entry
			optOrder = append(optOrder, in.Name)
		} else {
			required[in.Name] = entry
			reqOrder = append(reqOrder, in.Name)
		}
	}
	outTypes := map[string]string{}
	output, names, isList, tips := []string{}, []string{}, []bool{}, []string{}
	for _, o := range s.Outputs {
		outTypes[o.Name] = o.Type
		output = append(output, o.Type)
		names = append(names, o.Name)
		isList = append(isList, false)
		tips = append(tips, o.Description)
	}
	display := s.DisplayName
	if display == "" {
		display = s.Type
	}
	return map[string]any{
		"input":           map[string]any{"required": required, "optional": optional},
		"input_order":     map[string]any{"required": nonNil(reqOrder), "optional": nonNil(optOrder)},
		"output":          output,
		"output_is_list":  isList,
		"output_name":     names,
		"output_tooltips": tips,
		"name":            s.Type,
		"display_name":    display,
		"description":     s.Description,
		"python_module":   "face0." + d.Pack,
		"category":        s.Category,
		"output_node":     s.OutputNode,
		"deprecated":      false,
		"experimental":    false,
		"face0_schema":    engine.NodeSchema(s),
		"face0_types":     map[string]any{"inputs": inTypes, "outputs": outTypes},
		"face0_pack":      d.Pack,
		"face0_version":   s.Version,
		"face0_cacheable": s.Deterministic,
	}
}

// comfyInput is an input as ComfyUI describes it: [TYPE, {options}], or
// [[choices...], {options}] for an enum. It reports whether there is a default.
func comfyInput(in *pb.PortSpec) ([]any, bool) {
	var sch map[string]any
	if in.Schema != "" {
		_ = json.Unmarshal([]byte(in.Schema), &sch)
	}
	opts := map[string]any{}
	def, hasDefault := sch["default"]
	if hasDefault {
		opts["default"] = def
	}
	t := port.Type(in.Type)
	var head any = in.Type
	switch t.Base() {
	case port.Int, port.Float:
		copyKey(opts, "min", sch, "minimum")
		copyKey(opts, "max", sch, "maximum")
		copyKey(opts, "step", sch, "x-face0-step")
		if t.Base() == port.Int {
			if _, ok := opts["step"]; !ok {
				opts["step"] = 1
			}
		}
		if w, _ := sch["x-face0-widget"].(string); w == "slider" {
			opts["display"] = "slider"
		}
		if r, _ := sch["x-face0-randomize"].(bool); r {
			opts["control_after_generate"] = true
		}
	case port.String:
		if m, _ := sch["x-face0-multiline"].(bool); m {
			opts["multiline"] = true
		}
	case port.Enum:
		if choices, ok := sch["enum"].([]any); ok {
			head = choices
		} else {
			head = []any{}
		}
		// A choice of the input folder's files with an upload button
		// (LoadImage's image), as ComfyUI marks it.
		if w, _ := sch["x-face0-widget"].(string); w == "image" {
			opts["image_upload"] = true
		}
	}
	if in.Description != "" {
		opts["tooltip"] = in.Description
	}
	if in.LinkOnly && t.Literal() {
		opts["forceInput"] = true
	}
	if len(opts) == 0 {
		return []any{head}, hasDefault
	}
	return []any{head, opts}, hasDefault
}

func copyKey(dst map[string]any, dk string, src map[string]any, sk string) {
	if v, ok := src[sk]; ok {
		dst[dk] = v
	}
}
