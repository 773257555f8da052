package base

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/face0/face0/ml/sdmodel"
)

// mixtureFile is where a model keeps its embedding distribution
// (nodes/face0.MixtureFile); it goes with the projection.
const mixtureFile = "face0/embedding_mixture.json"

// trainingFile is the provenance training/pipeline writes.
const trainingFile = "face0/training.json"

// AttachProjection puts the face projection of a trained model folder
// (from) into model (a folder Import wrote), so that model samples with a
// face: face0/projection.onnx and the embedding distribution are copied and
// face0.json takes the embedding space and dimension and says the
// projection is trained.
//
// A projection only fits the UNet it was trained with. Unless force, it is
// refused when from's training.json does not show it was trained with the
// UNet frozen (face0 train --adapter-only) on this very folder as the base:
// a projection trained jointly with a fine-tuned UNet belongs with that
// UNet (use the trained folder as it is).
func AttachProjection(modelDir, from string, force bool) error {
	dst, err := sdmodel.Load(modelDir)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	srcm, err := sdmodel.Load(from)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if !srcm.Manifest.HasFace() {
		return fmt.Errorf("attach: %s has no trained projection either", srcm.Dir)
	}
	if dst.Manifest.HasFace() && !force {
		return fmt.Errorf("attach: %s has a trained projection already (space %q); --force replaces it", dst.Dir, dst.Manifest.Embedding.Space)
	}
	d, s := dst.Manifest, srcm.Manifest
	switch {
	case d.TextWidth != s.TextWidth:
		return fmt.Errorf("attach: the projection makes %d-wide tokens but %s's UNet takes a %d-wide context", s.TextWidth, dst.Dir, d.TextWidth)
	case d.ContextLength != s.ContextLength || d.FaceTokenStart != s.FaceTokenStart || d.FaceTokens != s.FaceTokens:
		return fmt.Errorf("attach: the projection's face tokens (%d at %d of %d) do not sit where %s's do (%d at %d of %d)",
			s.FaceTokens, s.FaceTokenStart, s.ContextLength, dst.Dir, d.FaceTokens, d.FaceTokenStart, d.ContextLength)
	}
	if !force {
		if err := trainedOn(srcm.Dir, dst.Dir); err != nil {
			return fmt.Errorf("attach: %w (--force attaches it anyway)", err)
		}
	}
	for _, f := range []string{sdmodel.ProjectionFile, sdmodel.ProjectionFile + ".data", mixtureFile} {
		in := filepath.Join(srcm.Dir, filepath.FromSlash(f))
		if _, err := os.Stat(in); err != nil {
			continue
		}
		if err := copyAtomic(in, filepath.Join(dst.Dir, filepath.FromSlash(f))); err != nil {
			return fmt.Errorf("attach: %w", err)
		}
	}
	man := d
	man.Projection = sdmodel.ProjectionTrained
	man.Embedding = s.Embedding
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dst.Dir, sdmodel.ManifestFile)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := sdmodel.Validate(dst.Dir); err != nil {
		return fmt.Errorf("attach: the folder does not check out afterwards: %w", err)
	}
	return nil
}

// trainedOn checks from's training.json: the projection was trained with
// the UNet frozen, on base as the base.
func trainedOn(from, base string) error {
	raw, err := os.ReadFile(filepath.Join(from, filepath.FromSlash(trainingFile)))
	if err != nil {
		return fmt.Errorf("%s has no %s, so nothing says which UNet its projection was trained with", from, trainingFile)
	}
	var prov struct {
		Training struct {
			AdapterOnly bool `json:"adapter_only"`
		} `json:"training"`
		Prepared struct {
			Base string `json:"base"`
		} `json:"prepared"`
	}
	if err := json.Unmarshal(raw, &prov); err != nil {
		return fmt.Errorf("%s: %w", trainingFile, err)
	}
	if !prov.Training.AdapterOnly {
		return fmt.Errorf("the projection of %s was trained jointly with a fine-tuned UNet, which %s does not have: use %s as it is, or train with --adapter-only on %s", from, base, from, base)
	}
	a, errA := os.Stat(prov.Prepared.Base)
	b, errB := os.Stat(base)
	if prov.Prepared.Base == "" || errA != nil || errB != nil || !os.SameFile(a, b) {
		return fmt.Errorf("the projection of %s was trained on the base %q, not on %s", from, prov.Prepared.Base, base)
	}
	return nil
}

func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(out.Name())
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(out.Name())
		return err
	}
	_ = os.Chmod(out.Name(), 0o644)
	return os.Rename(out.Name(), dst)
}
