package face0

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/ml/sdmodel"
)

// untrainedModel writes a tiny model as an import leaves an SD checkpoint:
// no projection file, face0.json saying the projection is untrained and
// naming no embedding space.
func untrainedModel(t *testing.T, dir string) {
	t.Helper()
	must(t, sdmodel.Generate(dir, sdmodel.TinyConfig()))
	must(t, os.Remove(filepath.Join(dir, filepath.FromSlash(sdmodel.ProjectionFile))))
	var man sdmodel.Manifest
	b, err := os.ReadFile(filepath.Join(dir, sdmodel.ManifestFile))
	must(t, err)
	must(t, json.Unmarshal(b, &man))
	man.Projection = sdmodel.ProjectionUntrained
	man.Embedding.Space, man.Embedding.Dim = "", 0
	b, err = json.Marshal(man)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, sdmodel.ManifestFile), b, 0o644))
}

// TestUntrainedProjection: a model without a trained projection samples
// from text, and refuses a face at every door: the validator (no
// embedder's space is its space), the sampler and RandomEmbedding (each
// naming the reason and what to do).
func TestUntrainedProjection(t *testing.T) {
	needORT(t)
	root := t.TempDir()
	untrainedModel(t, filepath.Join(root, "imported"))
	must(t, sdmodel.Generate(filepath.Join(root, tinyModel), sdmodel.TinyConfig()))
	r := newRig(t, root)

	lat, shape, line := r.latentOf(t, samplerGraph(t, "imported", -1, map[string]any{"steps": 2}))
	if len(lat) != 4*4*4 || shape[1] != 4 || !strings.Contains(line, "device cpu") {
		t.Fatalf("text-only sampling: %v values of shape %v; log %q", len(lat), shape, line)
	}

	for _, d := range r.mgr.Nodes() {
		if d.Spec.GetType() != "Face0Sampler" {
			continue
		}
		for _, in := range d.Spec.Inputs {
			if in.Name == "face_embedding" && in.GetParam().GetMap()["imported"] != NoProjectionSpace {
				t.Errorf("face_embedding space table %v", in.GetParam().GetMap())
			}
		}
	}
	// A face embedding linked straight to it is refused before the run.
	_, _, err := r.run(context.Background(), t, graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": "imported", "text": "x"}},
		node{"face", "RandomEmbedding", map[string]any{"model": tinyModel, "seed": 1}},
		node{"sampler", "Face0Sampler", map[string]any{"model": "imported", "positive": link("prompt", "CONDITIONING"), "face_embedding": link("face", "embedding")}},
	), "sampler")
	if err == nil || !strings.Contains(err.Error(), NoProjectionSpace) {
		t.Errorf("a face linked to a model without projection: %v", err)
	}
	// Through Interpolate (whose output takes any space) it reaches the
	// sampler, which refuses it.
	_, _, err = r.run(context.Background(), t, graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": "imported", "text": "x"}},
		node{"face", "RandomEmbedding", map[string]any{"model": tinyModel, "seed": 1}},
		node{"mix", "Interpolate", map[string]any{"a": link("face", "embedding"), "b": link("face", "embedding")}},
		node{"sampler", "Face0Sampler", map[string]any{"model": "imported", "positive": link("prompt", "CONDITIONING"), "face_embedding": link("mix", "embedding"), "steps": 1}},
	), "sampler")
	if err == nil || !strings.Contains(err.Error(), "no trained face projection") || !strings.Contains(err.Error(), "attach-projection") {
		t.Errorf("a face at run time: %v", err)
	}
	_, _, err = r.run(context.Background(), t, graph(t, node{"e", "RandomEmbedding", map[string]any{"model": "imported", "seed": 1}}), "e")
	if err == nil || !strings.Contains(err.Error(), "no trained face projection") {
		t.Errorf("RandomEmbedding: %v", err)
	}
}

// TestDeviceCUDAWithoutGPU: asking for the cuda device where it cannot run
// is an error that says what is missing, never a silent CPU run.
func TestDeviceCUDAWithoutGPU(t *testing.T) {
	r := newRig(t, modelsDir)
	_, _, err := r.run(context.Background(), t, graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": tinyModel, "text": "x", "device": "cuda"}}), "prompt")
	if err == nil {
		t.Skip("the cuda device works on this machine")
	}
	if !strings.Contains(err.Error(), "cuda execution provider is not available") {
		t.Errorf("cuda without a GPU: %v", err)
	}
	_, _, err = r.run(context.Background(), t, graph(t,
		node{"prompt", "EncodeText", map[string]any{"model": tinyModel, "text": "x", "device": "tpu"}}), "prompt")
	if err == nil || !strings.Contains(err.Error(), "device") {
		t.Errorf("an unknown device: %v", err)
	}
}
