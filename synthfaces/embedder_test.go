package synthfaces

import (
	"math"
	"os"
	"testing"
	"time"
)

// TestTrainEmbedder rebuilds embedder.bin; run it with
// SYNTHFACES_TRAIN_EMBEDDER=1 after any change that alters renders (a few
// minutes on 2 cores).
func TestTrainEmbedder(t *testing.T) {
	if os.Getenv("SYNTHFACES_TRAIN_EMBEDDER") == "" {
		t.Skip("set SYNTHFACES_TRAIN_EMBEDDER=1 to retrain embedder.bin")
	}
	t0 := time.Now()
	m := trainEmbedder(embedderTrainSeed, embedTrainIDs, embedTrainPerID, embedTrainEpochs)
	t.Logf("trained in %s", time.Since(t0).Round(time.Second))
	for _, v := range m.w1 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("training diverged (non-finite weights); lower embedLR")
		}
	}
	if err := os.WriteFile("embedder.bin", encodeEmbedder(m), 0o644); err != nil {
		t.Fatal(err)
	}
}

// identification embeds per images of each of ids held-out identities and
// returns the nearest-neighbour identification rate (leave one out) and
// the mean cosine of same-identity and different-identity pairs.
func identification(t *testing.T, embed func(Sample) []float32, seed uint64, id0, ids, per int) (acc, same, diff float64) {
	t.Helper()
	type e struct {
		id int
		v  []float32
	}
	var all []e
	for id := id0; id < id0+ids; id++ {
		for j := range per {
			all = append(all, e{id, embed(RenderSample(seed, id, j, RenderOptions{Size: 128}))})
		}
	}
	var ns, nd, hit int
	for i, a := range all {
		best, bi := -2.0, -1
		for j, b := range all {
			if i == j {
				continue
			}
			c := cosine(a.v, b.v)
			if a.id == b.id {
				same += c
				ns++
			} else {
				diff += c
				nd++
			}
			if c > best {
				best, bi = c, j
			}
		}
		if all[bi].id == a.id {
			hit++
		}
	}
	return float64(hit) / float64(len(all)), same / float64(ns), diff / float64(nd)
}

// TestEmbedderSeparatesHeldOut: on identities no training saw (the held-out
// range of dataset seed 1), the shipped embedder identifies most images'
// identity by nearest neighbour (chance: 1/25) and same-identity pairs are
// far closer than different ones.
func TestEmbedderSeparatesHeldOut(t *testing.T) {
	if _, err := decodeEmbedder(embedderBin); err != nil {
		t.Fatalf("shipped embedder.bin: %v (retrain with SYNTHFACES_TRAIN_EMBEDDER=1)", err)
	}
	acc, same, diff := identification(t, func(s Sample) []float32 { return Embed(s.Pixels).Vector }, 1, HeldOutBase, 25, 6)
	t.Logf("held-out: nearest-neighbour identification %.1f%% (chance 4%%), cosine same %.3f, different %.3f", 100*acc, same, diff)
	if acc < 0.6 || same-diff < 0.4 {
		t.Errorf("embedder separates identities too weakly: identification %.2f, cosine same %.3f vs different %.3f", acc, same, diff)
	}
	// The embedding of a 32-pixel render (the tiny model's resolution) stays
	// close to that of the 128-pixel one.
	var c float64
	for id := HeldOutBase; id < HeldOutBase+10; id++ {
		a := Embed(RenderSample(1, id, 0, RenderOptions{Size: 128}).Pixels).Vector
		b := Embed(RenderSample(1, id, 0, RenderOptions{Size: 32}).Pixels).Vector
		c += cosine(a, b) / 10
	}
	t.Logf("32 px vs 128 px render: mean cosine %.3f", c)
	if c < 0.8 {
		t.Errorf("32 px and 128 px renders embed apart: mean cosine %.3f", c)
	}
}
