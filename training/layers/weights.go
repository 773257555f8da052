package layers

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/face0/face0/training/model"
)

// Check verifies that w holds exactly the weights of specs with their
// shapes. The error, "what: …", names every missing, unexpected and
// mis-shaped tensor, not a sample of them: a converted checkpoint that is
// off by a few names is then fixed in one pass. (training/model.Check
// keeps its own, shortened, listing for its small networks.)
func Check(w model.Weights, specs []model.ParamSpec, what string) error {
	var missing, shape, extra []string
	want := map[string]bool{}
	for _, s := range specs {
		want[s.Name] = true
		t, ok := w[s.Name]
		switch {
		case !ok:
			missing = append(missing, s.Name)
		case !slices.Equal(t.Shape, s.Shape):
			shape = append(shape, fmt.Sprintf("%s has shape %v, want %v", s.Name, t.Shape, s.Shape))
		case len(t.Data) != s.Size():
			shape = append(shape, fmt.Sprintf("%s has %d values, its shape %v needs %d", s.Name, len(t.Data), s.Shape, s.Size()))
		}
	}
	for k := range w {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d missing: %s", len(missing), strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d unexpected: %s", len(extra), strings.Join(extra, ", ")))
	}
	if len(shape) > 0 {
		parts = append(parts, fmt.Sprintf("%d with the wrong shape: %s", len(shape), strings.Join(shape, ", ")))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", what, strings.Join(parts, "; "))
}

// ReadPrefixed reads every tensor of a safetensors file as float32 (see
// model.ReadWeights) and keeps those whose name starts with prefix, with
// prefix stripped; "" keeps them all. A checkpoint that bundles several
// networks ("unet.", "vae.", …) then loads one of them by its plain names.
func ReadPrefixed(path, prefix string) (model.Weights, error) {
	all, _, err := model.ReadWeights(path)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		return all, nil
	}
	w := model.Weights{}
	for k, t := range all {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			w[name] = t
		}
	}
	return w, nil
}
