//go:build soak

package evalnet

import (
	"bytes"
	"testing"
	"time"
)

// TestSoakNetworksRebuild retrains both networks with the shipped settings
// and compares the encoding with evalnet.bin byte for byte (about 7
// minutes on two cores). TestTrainingFingerprint is its quick stand-in in
// the normal suite.
func TestSoakNetworksRebuild(t *testing.T) {
	t0 := time.Now()
	if got := trainShipped(); !bytes.Equal(got, shipped) {
		t.Errorf("the training no longer reproduces evalnet.bin (%d bytes, shipped %d): retrain it (EVALNET_TRAIN=1 go test -run TestTrainNetworks) and record the fingerprint", len(got), len(shipped))
	}
	t.Logf("rebuilt in %s", time.Since(t0).Round(time.Second))
}
