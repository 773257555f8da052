package data

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/face0/face0/ml/clip"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/training"
	"github.com/face0/face0/training/textclip"
	"github.com/face0/face0/training/textenc"
)

// textEncoderConfig is the CLIP text model (training/textenc) that
// pretraining gives an encoder folder described by man: its width, context
// length and vocabulary (the end token, CLIP's largest id, closes it), with
// layers and heads from t and a 4× MLP as CLIP's.
func textEncoderConfig(man sdmodel.Manifest, t sdmodel.Config) textenc.Config {
	c := textenc.Tiny()
	c.VocabSize = man.PadToken + 1
	c.MaxPositionEmbeddings = man.ContextLength
	c.HiddenSize = man.TextWidth
	c.IntermediateSize = 4 * man.TextWidth
	c.NumHiddenLayers = t.TextLayers
	c.NumAttentionHeads = t.TextHeads
	return c
}

// Text pretraining batches: textclip's default, and the smallest batch
// FitTextBatch falls back to (fewer negatives per caption teach little).
const (
	maxTextBatch = 128
	MinTextBatch = 8
)

// FitTextBatch is the pretraining batch for n caption–image pairs when none
// is given: textclip's 128, halved until a held-out share (heldOut, 0:
// textclip's 10%) of the pairs fills one batch and the rest at least one more,
// but not below MinTextBatch. A small dataset (a few hundred images) thus
// pretrains with smaller batches instead of failing; below
// MinTextPairs(heldOut) pairs there is too little to pretrain on.
func FitTextBatch(n int, heldOut float64) int {
	if heldOut <= 0 {
		heldOut = textclip.Options{}.WithDefaults().HeldOut
	}
	b := maxTextBatch
	for b > MinTextBatch {
		held := int(math.Round(heldOut*float64(n))) / b * b
		if held >= b && n-held >= b {
			break
		}
		b /= 2
	}
	return b
}

// MinTextPairs is the fewest caption–image pairs text pretraining takes: a
// held-out batch of MinTextBatch and one to train on.
func MinTextPairs(heldOut float64) int {
	if heldOut <= 0 {
		heldOut = textclip.Options{}.WithDefaults().HeldOut
	}
	return int(math.Ceil((float64(MinTextBatch) - 0.5) / heldOut))
}

// pretrainText trains the text encoder of enc's folder contrastively on the
// kept examples' caption–image pairs (the image side is the latent), writes
// it over the folder's text_encoder/model.onnx and loads the folder again.
func pretrainText(ctx context.Context, enc *sdmodel.Model, l *Listing, kept []int, items []item, o Options) (*sdmodel.Model, *TextPretrainInfo, error) {
	start := time.Now()
	man := enc.Manifest
	cfg := textEncoderConfig(man, o.TextEncoder)
	pairs := make([]textclip.Pair, len(kept))
	for k, i := range kept {
		pairs[k] = textclip.Pair{
			IDs:   enc.Tokenizer.Tokenize(l.Items[i].Caption, clip.WithContextLength(man.ContextLength), clip.WithPadToken(int32(man.PadToken))),
			Image: items[i].latent,
		}
	}
	be, err := training.Backend()
	if err != nil {
		return nil, nil, err
	}
	to := o.TextPretrain
	if to.Seed == 0 {
		to.Seed = o.TextEncoder.Seed
	}
	if to.Batch <= 0 {
		to.Batch = FitTextBatch(len(pairs), to.HeldOut)
	}
	to = to.WithDefaults()
	if to.Progress == nil {
		every := max(to.Steps/10, 1)
		to.Progress = func(step, total int, loss float64) {
			if step%every == 0 || step == total {
				o.Logf("text encoder pretraining: step %d/%d, loss %.3f", step, total, loss)
			}
		}
	}
	o.Logf("pretraining the text encoder on %d caption-image pairs (%d steps, batch %d)", len(pairs), to.Steps, to.Batch)
	res, err := textclip.Train(ctx, be, cfg, nil, pairs, to)
	if err != nil {
		return nil, nil, fmt.Errorf("data: text encoder pretraining: %w", err)
	}
	if err := textenc.WriteONNX(enc.Dir, cfg, res.Weights); err != nil {
		return nil, nil, fmt.Errorf("data: text encoder: %w", err)
	}
	enc2, err := sdmodel.Load(enc.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("data: the pretrained text encoder: %w", err)
	}
	info := &TextPretrainInfo{
		Steps: to.Steps, Batch: to.Batch, LR: to.LR, Pairs: len(pairs), HeldOutPairs: res.HeldOutPairs,
		FinalLoss: res.FinalLoss, RetrievalBefore: res.RetrievalBefore, RetrievalAfter: res.RetrievalAfter,
		RetrievalChance: res.RetrievalChance, Seconds: time.Since(start).Seconds(),
	}
	o.Logf("text encoder pretrained in %.0f s: loss %.3f; held-out caption→image retrieval %.1f%% (before %.1f%%, chance %.1f%%)",
		info.Seconds, info.FinalLoss, 100*info.RetrievalAfter, 100*info.RetrievalBefore, 100*info.RetrievalChance)
	return enc2, info, nil
}
