package face0

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	f0 "github.com/face0/face0/ml/face0"
	"github.com/face0/face0/ml/onnx"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/value"
)

// TestBadModelFolders: every way a model folder can be broken gives an
// error, through the plugin, that names the file and the problem.
func TestBadModelFolders(t *testing.T) {
	needORT(t)
	root := t.TempDir()
	for _, tc := range []struct {
		name   string
		break_ func(t testing.TB, dir string)
	}{
		{"missing-file", func(t testing.TB, dir string) {
			must(t, os.Remove(filepath.Join(dir, sdmodel.VAEDecoderFile)))
		}},
		{"wrong-input-name", func(t testing.TB, dir string) {
			renameInput(t, filepath.Join(dir, sdmodel.UNetFile), sdmodel.InSample, "latent")
		}},
		{"embedding-dim", func(t testing.TB, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["embedding"].(map[string]any)["dim"] = 512 })
		}},
		{"corrupt-onnx", func(t testing.TB, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, sdmodel.TextEncoderFile), []byte("this is not a protobuf\x00\xff\xfe"), 0o644))
		}},
		{"truncated-onnx", func(t testing.TB, dir string) {
			p := filepath.Join(dir, sdmodel.UNetFile)
			st, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, st.Size()/2))
		}},
		{"bad-manifest", func(t testing.TB, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, sdmodel.ManifestFile), []byte(`{"format": 3`), 0o644))
		}},
		{"wrong-text-width", func(t testing.TB, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["text_width"] = 768 })
		}},
	} {
		dir := filepath.Join(root, tc.name)
		must(t, sdmodel.Generate(dir, sdmodel.TinyConfig()))
		tc.break_(t, dir)
	}
	r := newRig(t, root)
	choices := r.modelChoices(t, "EncodeText")
	for _, tc := range []string{"missing-file", "corrupt-onnx"} {
		if !slices.Contains(choices, tc) {
			t.Errorf("broken model %s is not offered (choices %v): the user could not see what is wrong with it", tc, choices)
		}
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"missing-file", []string{"missing", sdmodel.VAEDecoderFile}},
		{"wrong-input-name", []string{sdmodel.UNetFile, `unexpected input "latent"`, `"sample"`}},
		{"embedding-dim", []string{sdmodel.ProjectionFile, "128-d", "embedding.dim is 512"}},
		{"corrupt-onnx", []string{sdmodel.TextEncoderFile}},
		{"truncated-onnx", []string{sdmodel.UNetFile}},
		{"bad-manifest", []string{sdmodel.ManifestFile, "not a valid manifest"}},
		{"wrong-text-width", []string{sdmodel.TextEncoderFile, "768"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := graph(t, node{"prompt", "EncodeText", map[string]any{"model": tc.name, "text": "x"}})
			_, _, err := r.run(context.Background(), t, w, "prompt")
			if err == nil {
				t.Fatal("a broken model ran")
			}
			msg := err.Error()
			t.Log(msg)
			for _, s := range tc.want {
				if !strings.Contains(msg, filepath.FromSlash(s)) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if !strings.Contains(msg, tc.name) {
				t.Errorf("error %q does not name the model", msg)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// renameInput renames a graph input and every use of it, as a model exported
// with other names would have.
func renameInput(t testing.TB, path, from, to string) {
	m, err := onnx.Read(path)
	must(t, err)
	found := false
	for _, in := range m.Graph.Input {
		if in.Name == from {
			in.Name, found = to, true
		}
	}
	if !found {
		t.Fatalf("%s has no input %q", path, from)
	}
	for _, n := range m.Graph.Node {
		for i, x := range n.Input {
			if x == from {
				n.Input[i] = to
			}
		}
	}
	must(t, os.Remove(path))
	must(t, onnx.SaveModel(m, path))
}

func editManifest(t testing.TB, dir string, edit func(map[string]any)) {
	p := filepath.Join(dir, sdmodel.ManifestFile)
	b, err := os.ReadFile(p)
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	edit(m)
	b, err = json.Marshal(m)
	must(t, err)
	must(t, os.WriteFile(p, b, 0o644))
}

// modelChoices is the enum a node's model input offers.
func (r *rig) modelChoices(t testing.TB, nodeType string) []string {
	t.Helper()
	for _, d := range r.mgr.Nodes() {
		if d.Spec.GetType() != nodeType {
			continue
		}
		for _, in := range d.Spec.Inputs {
			if in.Name == "model" {
				var s struct{ Enum []string }
				must(t, json.Unmarshal([]byte(in.Schema), &s))
				return s.Enum
			}
		}
	}
	t.Fatalf("no node %s with a model input", nodeType)
	return nil
}

func TestModelChoicesAndSpaces(t *testing.T) {
	r := newRig(t, modelsDir)
	if got := r.modelChoices(t, "Face0Sampler"); !slices.Equal(got, []string{otherModel, tinyModel}) {
		t.Errorf("model choices %v, want [%s %s]", got, otherModel, tinyModel)
	}
	for _, d := range r.mgr.Nodes() {
		if d.Spec.GetType() != "Face0Sampler" {
			continue
		}
		for _, in := range d.Spec.Inputs {
			if in.Name == "face_embedding" {
				m := in.GetParam().GetMap()
				if m[tinyModel] != "faceapi-128" || m[otherModel] != "other-64" {
					t.Errorf("face_embedding space table %v", m)
				}
			}
		}
	}
}

// TestRandomEmbedding: seeded, in the model's space and dimension, from the
// mixture when the model ships one.
func TestRandomEmbedding(t *testing.T) {
	needORT(t)
	root := t.TempDir()
	must(t, sdmodel.Generate(filepath.Join(root, "plain"), sdmodel.TinyConfig()))
	withMix := filepath.Join(root, "mix")
	must(t, sdmodel.Generate(withMix, sdmodel.TinyConfig()))
	// A one-component mixture far from the origin: its samples are easy
	// to tell from unit vectors.
	mix := f0.Mixture{Dim: 128, Weights: []float64{1}, Means: [][]float64{make([]float64, 128)}, Variances: [][]float64{make([]float64, 128)}}
	for i := range 128 {
		mix.Means[0][i], mix.Variances[0][i] = 10, 0.01
	}
	b, _ := json.Marshal(mix)
	must(t, os.WriteFile(filepath.Join(withMix, MixtureFile), b, 0o644))
	badMix := filepath.Join(root, "badmix")
	must(t, sdmodel.Generate(badMix, sdmodel.TinyConfig()))
	mix.Dim, mix.Means[0], mix.Variances[0] = 2, []float64{0, 0}, []float64{1, 1}
	b, _ = json.Marshal(mix)
	must(t, os.WriteFile(filepath.Join(badMix, MixtureFile), b, 0o644))

	r := newRig(t, root)
	get := func(model string, seed int) ([]float32, string, error) {
		w := graph(t, node{"e", "RandomEmbedding", map[string]any{"model": model, "seed": seed}})
		res, _, err := r.run(context.Background(), t, w, "e")
		if err != nil {
			return nil, "", err
		}
		v := res.Outputs["e"].Values["embedding"]
		data, _, err := value.AsFloat32(v)
		return data, v.GetType(), err
	}
	a, typ, err := get("plain", 1)
	must(t, err)
	if typ != "FACE_EMBEDDING:faceapi-128" || len(a) != 128 {
		t.Fatalf("got %s of %d values", typ, len(a))
	}
	if n := f0.Norm(a); n < 0.999 || n > 1.001 {
		t.Errorf("without a mixture the embedding should be a unit vector; norm %g", n)
	}
	a2, _, _ := get("plain", 1)
	b2, _, _ := get("plain", 2)
	if !bitEqual(a, a2) || bitEqual(a, b2) {
		t.Error("RandomEmbedding is not a function of its seed")
	}
	m, _, err := get("mix", 1)
	must(t, err)
	if m[0] < 9 || m[0] > 11 {
		t.Errorf("mixture sample %v... is not near the mixture's mean 10", m[:4])
	}
	if _, _, err := get("badmix", 1); err == nil || !strings.Contains(err.Error(), filepath.FromSlash(MixtureFile)) {
		t.Errorf("a 2-d mixture for a 128-d model: got %v, want an error naming %s", err, MixtureFile)
	}
}

func TestInterpolate(t *testing.T) {
	r := newRig(t, modelsDir)
	run := func(mode string, t_ float64, models ...string) ([]float32, error) {
		nodes := []node{}
		in := map[string]any{"mode": mode, "t": t_}
		for i, m := range models {
			id := string(rune('a' + i))
			nodes = append(nodes, node{"e" + id, "RandomEmbedding", map[string]any{"model": m, "seed": i + 1}})
			in[id] = link("e"+id, "embedding")
		}
		nodes = append(nodes, node{"mix", "Interpolate", in})
		res, _, err := r.run(context.Background(), t, graph(t, nodes...), "mix")
		if err != nil {
			return nil, err
		}
		d, _, err := value.AsFloat32(res.Outputs["mix"].Values["embedding"])
		return d, err
	}
	a, err := run("linear", 0, tinyModel, tinyModel)
	must(t, err)
	b, err := run("linear", 1, tinyModel, tinyModel)
	must(t, err)
	half, err := run("linear", 0.5, tinyModel, tinyModel)
	must(t, err)
	for i := range a {
		if d := half[i] - (a[i]+b[i])/2; d > 1e-6 || d < -1e-6 {
			t.Fatalf("linear t=0.5 is not the midpoint at %d", i)
		}
	}
	s, err := run("spherical", 0.5, tinyModel, tinyModel)
	must(t, err)
	if n := f0.Norm(s); n < 0.999 || n > 1.001 {
		t.Errorf("slerp of unit vectors has norm %g", n)
	}
	mean, err := run("mean", 0, tinyModel, tinyModel, tinyModel)
	must(t, err)
	if len(mean) != 128 {
		t.Errorf("mean has %d values", len(mean))
	}
	_, err = run("linear", 0.5, tinyModel, otherModel)
	if err == nil || !strings.Contains(err.Error(), "other-64") || !strings.Contains(err.Error(), "faceapi-128") {
		t.Errorf("mixing spaces: got %v, want an error naming both spaces", err)
	}
}
