package evaluate

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"path/filepath"
	"strconv"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/plugins/value"
	"github.com/face0/face0/synthfaces"
)

// StripOptions configure the feature strips.
type StripOptions struct {
	Options
	Setting Setting // the sampler setting [ShippedSetting: what the default workflow shows]
	Prompt  string  // the caption every image of a strip shares
	Seed    int64   // the noise seed every image of a strip shares
	N       int     // images per strip [7]
}

// Strips makes the README's two strips through the Interpolate and
// RandomEmbedding nodes: the first two held-out faces, then the spherical
// interpolation between their embeddings (t = 0 .. 1 in N steps); and N
// random embeddings (seeds 0..N-1). Prompt and noise seed are fixed.
func Strips(ctx context.Context, o StripOptions) (interp, random []image.Image, err error) {
	if err := o.defaults(); err != nil {
		return nil, nil, err
	}
	if o.Setting.Steps == 0 {
		o.Setting = ShippedSetting
	}
	st := o.Setting
	if o.N <= 1 {
		o.N = 7
	}
	if o.Prompt == "" {
		o.Prompt = Prompts[0].Text
	}
	var nodes []map[string]any
	add := func(id, typ string, in map[string]any) {
		nodes = append(nodes, map[string]any{"id": id, "type": typ, "inputs": in})
	}
	link := func(node, out string) map[string]any { return map[string]any{"node": node, "output": out} }
	var faces []image.Image
	for i, name := range []string{"a", "b"} {
		id := synthfaces.HeldOutBase + i
		s := synthfaces.RenderSample(o.DatasetSeed, id, 0, synthfaces.RenderOptions{Size: 128})
		file := fmt.Sprintf("heldout-%d-%d.png", o.DatasetSeed, id)
		if err := writePNG(filepath.Join(o.Inputs, file), s.Pixels); err != nil {
			return nil, nil, err
		}
		faces = append(faces, s.Pixels)
		add("load_"+name, "LoadImage", map[string]any{"image": filepath.Join("evaluate", file)})
		add("embed_"+name, "EmbedFace", map[string]any{"image": link("load_"+name, "IMAGE"), "model": synthfaces.IDSpace})
	}
	add("text", "EncodeText", map[string]any{"model": o.Model, "text": o.Prompt})
	sampler := func(id string, face map[string]any) {
		in := map[string]any{"model": o.Model, "positive": link("text", "CONDITIONING"), "face_embedding": face,
			"seed": o.Seed, "steps": st.Steps, "batch_size": 1, "scheduler": st.Scheduler, "w": st.W, "c": st.C, "a": st.A, "eta": st.Eta}
		add("sample_"+id, "Face0Sampler", in)
		add("decode_"+id, "Decode", map[string]any{"model": o.Model, "latent": link("sample_"+id, "LATENT")})
	}
	var want []string
	for k := range o.N {
		t := float64(k) / float64(o.N-1)
		id := "interp" + strconv.Itoa(k)
		add(id, "Interpolate", map[string]any{"a": link("embed_a", "embedding"), "b": link("embed_b", "embedding"), "mode": "spherical", "t": t})
		sampler(id, link(id, "embedding"))
		want = append(want, "decode_"+id)
	}
	for k := range o.N {
		id := "random" + strconv.Itoa(k)
		add(id, "RandomEmbedding", map[string]any{"model": o.Model, "seed": k})
		sampler(id, link(id, "embedding"))
		want = append(want, "decode_"+id)
	}
	data, err := json.Marshal(map[string]any{"version": workflow.Version, "name": "strips", "nodes": nodes})
	if err != nil {
		return nil, nil, err
	}
	wf, _, err := workflow.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	// LoadImage lists the input folder as it was when the plugins last
	// described their nodes, before the faces above were written.
	cat, err := refreshed(ctx, o.App)
	if err != nil {
		return nil, nil, err
	}
	plan, err := cat.Compile(wf, want)
	if err != nil {
		return nil, nil, fmt.Errorf("evaluate: strips: %w", err)
	}
	res, err := o.App.Engine.Run(ctx, plan, engine.RunOptions{PromptID: "evaluate-strips", NoCache: true})
	if err != nil {
		return nil, nil, fmt.Errorf("evaluate: strips: %w", err)
	}
	get := func(node string) (image.Image, error) {
		out, ok := res.Outputs[node]
		if !ok {
			return nil, fmt.Errorf("evaluate: strips: no output from %s", node)
		}
		imgs, err := value.AsImages(out.Values["IMAGE"])
		if err != nil || len(imgs) != 1 {
			return nil, fmt.Errorf("evaluate: strips: %s: %d images, %v", node, len(imgs), err)
		}
		return imgs[0], nil
	}
	collect := func(prefix string) ([]image.Image, error) {
		var out []image.Image
		for k := range o.N {
			img, err := get("decode_" + prefix + strconv.Itoa(k))
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
		return out, nil
	}
	mid, err := collect("interp")
	if err != nil {
		return nil, nil, err
	}
	interp = append(append([]image.Image{faces[0]}, mid...), faces[1])
	if random, err = collect("random"); err != nil {
		return nil, nil, err
	}
	return interp, random, nil
}
