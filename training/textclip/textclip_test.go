package textclip

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/training"
	"github.com/face0/face0/training/textenc"
)

// toyPairs builds captions "BOS colour shape EOS pad..." over a 40-token
// vocabulary (end token 39, also the padding) whose images are one-hot
// codes of (colour, shape) plus noise: retrieval is possible only if the
// encoder learns which words the image shows.
func toyPairs(n int, seed uint64) []Pair {
	const L, colours, shapes = 12, 6, 5
	r := rand.New(rand.NewPCG(seed, 3))
	pairs := make([]Pair, n)
	for i := range pairs {
		c, s := r.IntN(colours), r.IntN(shapes)
		ids := make([]int32, L)
		for j := range ids {
			ids[j] = 39
		}
		ids[0], ids[1], ids[2] = 38, int32(1+c), int32(10+s)
		if r.IntN(2) == 0 { // a filler word sometimes, so positions vary
			ids[1], ids[2], ids[3] = 20, int32(1+c), int32(10+s)
		}
		img := make([]float32, colours+shapes+4)
		img[c], img[colours+s] = 1, 1
		for k := range img {
			img[k] += float32(0.1 * r.NormFloat64())
		}
		pairs[i] = Pair{IDs: ids, Image: img}
	}
	return pairs
}

func toyConfig() textenc.Config {
	c := textenc.Tiny()
	c.VocabSize, c.MaxPositionEmbeddings, c.HiddenSize, c.IntermediateSize = 40, 12, 16, 64
	return c
}

func TestTrainLearnsRetrieval(t *testing.T) {
	be, err := training.Backend()
	if err != nil {
		t.Fatal(err)
	}
	c := toyConfig()
	pairs := toyPairs(320, 1)
	init := textenc.NewWeights(c, 7)
	res, err := Train(context.Background(), be, c, init, pairs, Options{Steps: 60, Batch: 32, LR: 5e-3, Dim: 16, ImageHidden: 32, HeldOut: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out retrieval %.3f -> %.3f (chance %.3f), final loss %.3f", res.RetrievalBefore, res.RetrievalAfter, res.RetrievalChance, res.FinalLoss)
	// 30 (colour, shape) combinations, 32 images a batch: picking a
	// matching caption by chance is about 1/30; a trained encoder should
	// reach well over half.
	if res.RetrievalAfter < 0.5 || res.RetrievalAfter < res.RetrievalBefore+0.3 {
		t.Errorf("held-out retrieval %.3f after training (before %.3f, chance %.3f): the encoder did not learn the captions", res.RetrievalAfter, res.RetrievalBefore, res.RetrievalChance)
	}
	if err := textenc.Check(c, res.Weights); err != nil {
		t.Fatalf("trained weights do not fit the config: %v", err)
	}
	// Unused token rows keep their initial values; used ones moved.
	D := c.HiddenSize
	tok, tok0 := res.Weights[tokenEmbedding].Data, init[tokenEmbedding].Data
	for _, id := range []int{0, 30, 37} {
		if !slices.Equal(tok[id*D:(id+1)*D], tok0[id*D:(id+1)*D]) {
			t.Errorf("token %d is never used but its embedding changed", id)
		}
	}
	if slices.Equal(tok[1*D:2*D], tok0[1*D:2*D]) {
		t.Error("token 1 (a colour) is used but its embedding did not change")
	}
	// Positions past the longest caption's end + padSlack (3 + 1 + 8 = 12
	// here: all trained) — shorten the captions to check the copy.
	short := make([]Pair, len(pairs))
	for i, p := range pairs {
		ids := slices.Clone(p.IDs)
		if ids[1] == 20 { // drop the filler: end token at position 3 for all
			copy(ids[1:], ids[2:])
			ids[len(ids)-1] = 39
		}
		short[i] = Pair{IDs: ids, Image: p.Image}
	}
	c.MaxPositionEmbeddings = 16
	for i := range short {
		short[i].IDs = append(short[i].IDs, 39, 39, 39, 39)
	}
	res2, err := Train(context.Background(), be, c, nil, short, Options{Steps: 2, Batch: 32, Dim: 16, ImageHidden: 32, HeldOut: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	pos := res2.Weights[positionEmbedding].Data
	Lt := 3 + 1 + padSlack
	for p := Lt; p < 16; p++ {
		if !slices.Equal(pos[p*D:(p+1)*D], pos[(Lt-1)*D:Lt*D]) {
			t.Errorf("position %d's embedding is not position %d's (the last trained one)", p, Lt-1)
		}
	}
	if slices.Equal(pos[(Lt-2)*D:(Lt-1)*D], pos[(Lt-1)*D:Lt*D]) {
		t.Error("trained positions are equal to each other")
	}
}

func TestTrainRejectsBadPairs(t *testing.T) {
	be, err := training.Backend()
	if err != nil {
		t.Fatal(err)
	}
	c := toyConfig()
	good := toyPairs(64, 2)
	cases := []struct {
		name  string
		edit  func([]Pair) []Pair
		batch int
		want  string
	}{
		{"none", func([]Pair) []Pair { return nil }, 8, "no caption-image pairs"},
		{"short ids", func(p []Pair) []Pair { p[3].IDs = p[3].IDs[:5]; return p }, 8, "pair 3 has 5 token ids, want the context length 12"},
		{"id outside vocabulary", func(p []Pair) []Pair { p[4].IDs[2] = 40; return p }, 8, "pair 4 has token id 40 outside the vocabulary [0, 40)"},
		{"image length", func(p []Pair) []Pair { p[5].Image = p[5].Image[:3]; return p }, 8, "pair 5 has 3 image features, pair 0 has 15"},
		{"too few for a batch", func(p []Pair) []Pair { return p }, 64, "64 pairs are too few for a batch of 64 held out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pairs := make([]Pair, len(good))
			for i, p := range good {
				pairs[i] = Pair{IDs: slices.Clone(p.IDs), Image: slices.Clone(p.Image)}
			}
			_, err := Train(context.Background(), be, c, nil, tc.edit(pairs), Options{Steps: 1, Batch: tc.batch, HeldOut: 0.2})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}
