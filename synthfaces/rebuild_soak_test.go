//go:build soak

package synthfaces

import (
	"bytes"
	"testing"
	"time"
)

// TestSoakShippedWeightsRebuild retrains the identity embedder and the
// scene probe with their shipped settings and compares the encoded
// weights with the shipped files byte for byte (about 4 minutes on two
// cores). TestTrainingFingerprint is its quick stand-in in the normal suite.
func TestSoakShippedWeightsRebuild(t *testing.T) {
	t0 := time.Now()
	if got := encodeEmbedder(trainEmbedder(embedderTrainSeed, embedTrainIDs, embedTrainPerID, embedTrainEpochs)); !bytes.Equal(got, embedderBin) {
		t.Errorf("the embedder's training no longer reproduces embedder.bin (%d bytes, shipped %d): retrain it (SYNTHFACES_TRAIN_EMBEDDER=1) and record the fingerprint", len(got), len(embedderBin))
	}
	t.Logf("embedder rebuilt in %s", time.Since(t0).Round(time.Second))
	t0 = time.Now()
	if got := encodeProbe(trainProbe(probeTrainSeed, probeTrainN, probeTrainEpochs)); !bytes.Equal(got, probeBin) {
		t.Errorf("the probe's training no longer reproduces probe.bin (%d bytes, shipped %d): retrain it (SYNTHFACES_TRAIN_PROBE=1) and record the fingerprint", len(got), len(probeBin))
	}
	t.Logf("probe rebuilt in %s", time.Since(t0).Round(time.Second))
}
