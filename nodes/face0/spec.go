package face0

import (
	"context"
	"encoding/json"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

// schemaPatch adds JSON Schema keywords that struct tags cannot express (such
// as multipleOf) to some inputs of a node, so that the host refuses a width
// of 500 at validation time, before any model loads, with the input named.
type schemaPatch struct {
	sdk.Node
	extra map[string]map[string]any // input name -> keywords
}

func (n schemaPatch) Spec() *pb.NodeSpec {
	spec := n.Node.Spec()
	for _, in := range spec.Inputs {
		add, ok := n.extra[in.Name]
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
