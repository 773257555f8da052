package face0

import (
	"context"
	"encoding/json"
	"fmt"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

// schemaPatch adds JSON Schema keywords that struct tags cannot express (such
// as multipleOf) to some inputs of a node, so that the host refuses a width
// of 500 at validation time, before any model loads, with the input named.
// It also carries the engine's vendor keywords: x-face0-rules (constraints
// between inputs, such as eta with a scheduler other than ddim) and
// x-face0-hint (what to do when a value is refused, such as a model that is
// not in the models folder).
type schemaPatch struct {
	sdk.Node
	extra map[string]map[string]any // input name -> keywords
	// dynamic adds keywords computed at each Describe (the models folder
	// the hint names).
	dynamic func() map[string]map[string]any
}

func (n schemaPatch) Spec() *pb.NodeSpec {
	spec := n.Node.Spec()
	extra := n.extra
	if n.dynamic != nil {
		extra = map[string]map[string]any{}
		for k, v := range n.extra {
			extra[k] = v
		}
		for k, v := range n.dynamic() {
			m := map[string]any{}
			for kk, vv := range extra[k] {
				m[kk] = vv
			}
			for kk, vv := range v {
				m[kk] = vv
			}
			extra[k] = m
		}
	}
	for _, in := range spec.Inputs {
		add, ok := extra[in.Name]
		if !ok {
			continue
		}
		schema := map[string]any{}
		if in.Schema != "" {
			_ = json.Unmarshal([]byte(in.Schema), &schema)
		}
		for k, v := range add {
			schema[k] = v
		}
		b, _ := json.Marshal(schema)
		in.Schema = string(b)
	}
	return spec
}

// Fingerprint forwards to the wrapped node, which the embedding hides.
func (n schemaPatch) Fingerprint(ctx context.Context, req *pb.FingerprintRequest) ([]byte, error) {
	if f, ok := n.Node.(sdk.Fingerprinter); ok {
		return f.Fingerprint(ctx, req)
	}
	return nil, nil
}

// etaRule refuses eta with a scheduler other than ddim when the workflow is
// checked, with what to change, instead of failing when the sampler runs.
var etaRule = map[string]any{"x-face0-rules": []any{map[string]any{
	"when": map[string]any{"required": []any{"scheduler"},
		"properties": map[string]any{"scheduler": map[string]any{"not": map[string]any{"const": "ddim"}}}},
	"then":    map[string]any{"const": 0},
	"message": "only the ddim scheduler takes eta (DDIM's η); set eta to 0 for euler and dpm++2m, or the scheduler to ddim",
}}}

// modelHint says, when a model input names a folder that is not there,
// where models are looked for and how one gets there.
func modelHint() map[string]map[string]any {
	root := modelsRoot()
	return map[string]map[string]any{"model": {"x-face0-hint": fmt.Sprintf(
		"models are the folders of %s (face0 models list checks them): put the model's folder there, or choose another models folder with $%s; "+
			"make example-plugin links the shipped tiny model there (or, in the repository: ln -s $PWD/models/face0-synthfaces %s/)",
		root, ModelsEnv, root)}}
}
