package synthfaces

import (
	"crypto/sha256"
	hexenc "encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The shipped embedder.bin and probe.bin are the output of TestTrainEmbedder
// and TestTrainProbe, minutes each. Every test run checks the claim more
// cheaply: a shortened training (same code, same seeds, a few dozen
// examples) must still give the outputs recorded in
// testdata/fingerprint.json, and the shipped files must still be the ones
// recorded beside them. A change to the renderer, the features, the
// initialisation or the training loop moves the short run's outputs, so
// this test fails until the weights are retrained, the fingerprint
// rewritten (SYNTHFACES_FINGERPRINT=1) and both committed together;
// TestSoakShippedWeightsRebuild does the full rebuild byte for byte.

const fingerprintFile = "testdata/fingerprint.json"

// fingerprint is the recorded state.
type fingerprint struct {
	EmbedderSHA256 string      `json:"embedder_sha256"`
	ProbeSHA256    string      `json:"probe_sha256"`
	Embedder       [][]float32 `json:"embedder_short_run"` // embeddings of fingerprintImages
	Probe          [][]float32 `json:"probe_short_run"`    // hat and glasses probabilities of the same
}

// fingerprintImages are the images the short runs are read out on.
func fingerprintImages() []*small {
	var out []*small
	for i := range 4 {
		out = append(out, resize32(RenderSample(1, HeldOutBase+i, i, RenderOptions{Size: 32}).Pixels))
	}
	return out
}

func shortRuns() fingerprint {
	var f fingerprint
	e := trainEmbedder(embedderTrainSeed, 40, 2, 1)
	p := trainProbe(probeTrainSeed, 120, 1)
	for _, x := range fingerprintImages() {
		in := make([]float32, embedIn)
		embedFeatures(x, in)
		for i := range in {
			in[i] = (in[i] - e.mean[i]) / e.std[i]
		}
		h := make([]float32, embedHidden)
		out := make([]float32, e.nOut)
		e.forward(in, h, out)
		activate(out)
		f.Embedder = append(f.Embedder, e.project(out))
		hat, gl := p.predict(x)
		f.Probe = append(f.Probe, append(append([]float32(nil), hat...), gl...))
	}
	return f
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hexenc.EncodeToString(s[:])
}

// TestTrainingFingerprint is the CI-sized check that the code still
// produces the shipped embedder and probe weights (see above).
func TestTrainingFingerprint(t *testing.T) {
	got := shortRuns()
	got.EmbedderSHA256, got.ProbeSHA256 = sha(embedderBin), sha(probeBin)
	if os.Getenv("SYNTHFACES_FINGERPRINT") != "" {
		data, _ := json.MarshalIndent(got, "", " ")
		if err := os.WriteFile(filepath.FromSlash(fingerprintFile), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", fingerprintFile)
		return
	}
	raw, err := os.ReadFile(filepath.FromSlash(fingerprintFile))
	if err != nil {
		t.Fatal(err)
	}
	var want fingerprint
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if got.EmbedderSHA256 != want.EmbedderSHA256 || got.ProbeSHA256 != want.ProbeSHA256 {
		t.Errorf("embedder.bin or probe.bin is not the file the fingerprint was recorded with; retrain both, then SYNTHFACES_FINGERPRINT=1 go test -run TestTrainingFingerprint")
	}
	// Tolerance: far above float32 reordering (a compiler fusing a
	// multiply-add), far below what a change of code gives (the first
	// SGD step alone moves outputs by 1e-2).
	const tol = 1e-4
	cmp := func(name string, a, b [][]float32) {
		if len(a) != len(b) {
			t.Fatalf("%s: %d images recorded, %d now", name, len(b), len(a))
		}
		for i := range a {
			for j := range a[i] {
				if d := math.Abs(float64(a[i][j] - b[i][j])); d > tol || len(a[i]) != len(b[i]) {
					t.Errorf("%s: a shortened training no longer gives the recorded output (image %d, value %d: %g, recorded %g): the code changed what the shipped weights were trained with. Retrain them (SYNTHFACES_TRAIN_EMBEDDER=1 / SYNTHFACES_TRAIN_PROBE=1), then record the new fingerprint (SYNTHFACES_FINGERPRINT=1 go test -run TestTrainingFingerprint)", name, i, j, a[i][j], b[i][j])
					return
				}
			}
		}
	}
	cmp("embedder", got.Embedder, want.Embedder)
	cmp("probe", got.Probe, want.Probe)
}
