package evalnet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/face0/face0/synthfaces"
)

// TestTrainingFingerprint is the CI-sized check that the code still
// produces the shipped evalnet.bin (TestTrainNetworks, 7 minutes): a
// shortened training of both networks (same code and seeds, a few dozen
// examples) must still give the outputs recorded in
// testdata/fingerprint.json, and evalnet.bin must be the file recorded
// beside them. Any change to the renders, the augmentation, the networks or
// their training moves the short run, so this fails until the weights are
// retrained and the fingerprint rewritten (EVALNET_FINGERPRINT=1) with them;
// TestSoakNetworksRebuild does the full rebuild byte for byte.
func TestTrainingFingerprint(t *testing.T) {
	got := shortRun()
	sum := sha256.Sum256(shipped)
	got.SHA256 = hex.EncodeToString(sum[:])
	path := filepath.Join("testdata", "fingerprint.json")
	if os.Getenv("EVALNET_FINGERPRINT") != "" {
		data, _ := json.MarshalIndent(got, "", " ")
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want fingerprint
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != want.SHA256 {
		t.Errorf("evalnet.bin is not the file the fingerprint was recorded with; retrain it (EVALNET_TRAIN=1 go test -run TestTrainNetworks), then EVALNET_FINGERPRINT=1 go test -run TestTrainingFingerprint")
	}
	// Far above float32 reordering, far below a change of code.
	const tol = 1e-4
	for _, c := range []struct {
		name      string
		got, want [][]float32
	}{{"detector", got.Detector, want.Detector}, {"image tower", got.Image, want.Image}, {"text tower", got.Text, want.Text}} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s: %d outputs recorded, %d now", c.name, len(c.want), len(c.got))
		}
	outer:
		for i := range c.got {
			for j := range c.got[i] {
				if len(c.got[i]) != len(c.want[i]) || math.Abs(float64(c.got[i][j]-c.want[i][j])) > tol {
					t.Errorf("%s: a shortened training no longer gives the recorded output (%d/%d: %g, recorded %g): the code changed what evalnet.bin was trained with. Retrain it (EVALNET_TRAIN=1 go test -run TestTrainNetworks), then EVALNET_FINGERPRINT=1 go test -run TestTrainingFingerprint", c.name, i, j, c.got[i][j], c.want[i][j])
					break outer
				}
			}
		}
	}
}

type fingerprint struct {
	SHA256   string      `json:"evalnet_sha256"`
	Detector [][]float32 `json:"detector_short_run"` // raw outputs on four renders
	Image    [][]float32 `json:"image_short_run"`    // image embeddings of the same
	Text     [][]float32 `json:"text_short_run"`     // text embeddings of their captions
}

func shortRun() fingerprint {
	var f fingerprint
	d := trainDetector(detectorSeed, 128, 1)
	c := trainCLIP(clipSeed, 32, 2, 1)
	da, ca := d.net.newActs(), c.img.newActs()
	for i := range 4 {
		s := synthfaces.RenderSample(1, synthfaces.HeldOutBase+i, i, synthfaces.RenderOptions{Size: Side})
		p := toPix(s.Pixels)
		p.normalize(da.x)
		d.net.forward(da)
		f.Detector = append(f.Detector, append([]float32(nil), da.out...))
		f.Image = append(f.Image, c.image(p, ca))
		f.Text = append(f.Text, c.textEmbedding(s.Caption+"; "+Describe(s.Identity)))
	}
	return f
}
