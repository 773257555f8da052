package evalnet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/face0/face0/ml/crop"
	"github.com/face0/face0/synthfaces"
)

// TestTrainNetworks rebuilds evalnet.bin (EVALNET_TRAIN=1; about 10 minutes
// on two cores) and prints how the new networks do on held-out renders.
// The file is a pure function of the code: a rebuild gives the same bytes
// (TestSoakNetworksRebuild checks that).
func TestTrainNetworks(t *testing.T) {
	if os.Getenv("EVALNET_TRAIN") == "" {
		t.Skip("set EVALNET_TRAIN=1 to retrain evalnet.bin")
	}
	t0 := time.Now()
	data := trainShipped()
	t.Logf("trained in %s", time.Since(t0).Round(time.Second))
	if err := os.WriteFile("evalnet.bin", data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	t.Logf("wrote evalnet.bin: %d bytes, sha256 %s", len(data), hex.EncodeToString(sum[:]))
	logQuality(t, s)
}

// trainShipped trains both networks with the shipped settings and
// encodes them.
func trainShipped() []byte {
	d := trainDetector(detectorSeed, detectorExamples, detectorEpochs)
	c := trainCLIP(clipSeed, clipIDs, clipPerID, clipEpochs)
	return encode(d, c)
}

// quality measures a scorer on renders of identities no network saw (the
// held-out range of dataset seed 1, the evaluation's identities, at 32 px
// as the tiny model draws them) and on images without a face.
type quality struct {
	detected, falsePos, iou float64 // face found in renders; in non-faces; mean IoU with the true box
	retrieval, chance       float64 // caption → image among a batch of renders
	idNN, idChance          float64 // face-crop nearest-neighbour identification
	same, diff              float64 // mean face cosine, same vs different identity
}

func (q quality) String() string {
	return fmt.Sprintf("faces found %.1f%% (non-faces %.1f%%, IoU %.2f); caption→image retrieval %.1f%% (chance %.1f%%); face-crop identification %.1f%% (chance %.1f%%), face cosine same %.3f vs different %.3f",
		100*q.detected, 100*q.falsePos, q.iou, 100*q.retrieval, 100*q.chance, 100*q.idNN, 100*q.idChance, q.same, q.diff)
}

func measure(s *Scorer) quality {
	var q quality
	const ids, per = 25, 6
	type emb struct {
		id int
		v  []float32
	}
	var faces []emb
	var imgs, caps [][]float32
	n := 0
	for i := range ids {
		for j := range per {
			smp := synthfaces.RenderSample(1, synthfaces.HeldOutBase+i, j, synthfaces.RenderOptions{Size: Side})
			f, ok := s.Detect(smp.Pixels)
			n++
			if ok {
				q.detected++
				q.iou += f.Box.IoU(crop.Box{X1: float64(smp.FaceBox.Min.X), Y1: float64(smp.FaceBox.Min.Y), X2: float64(smp.FaceBox.Max.X), Y2: float64(smp.FaceBox.Max.Y)})
			}
			v, _, _ := s.Face(smp.Pixels)
			faces = append(faces, emb{i, v})
			imgs = append(imgs, s.Image(smp.Pixels))
			caps = append(caps, s.Text(smp.Caption))
		}
	}
	q.iou /= q.detected
	q.detected /= float64(n)
	// Non-faces of a seed the detector never trained on.
	const neg = 200
	for i := range neg {
		e := detExampleAt(0x5eed, 2*i+1)
		if d, _ := s.detectPix(e.x); d >= Threshold {
			q.falsePos++
		}
	}
	q.falsePos /= neg
	// Retrieval in batches of 30 (6 identities × 5... every caption against
	// the 30 images of its batch).
	const batch = 30
	for b0 := 0; b0+batch <= len(imgs); b0 += batch {
		for i := b0; i < b0+batch; i++ {
			best, bj := -2.0, -1
			for j := b0; j < b0+batch; j++ {
				if c := synthfaces.Cosine(caps[i], imgs[j]); c > best {
					best, bj = c, j
				}
			}
			if bj == i {
				q.retrieval++
			}
		}
	}
	q.retrieval /= float64(len(imgs) / batch * batch)
	q.chance = 1.0 / batch
	var ns, nd float64
	for i, a := range faces {
		best, bi := -2.0, -1
		for j, b := range faces {
			if i == j {
				continue
			}
			c := synthfaces.Cosine(a.v, b.v)
			if a.id == b.id {
				q.same += c
				ns++
			} else {
				q.diff += c
				nd++
			}
			if c > best {
				best, bi = c, j
			}
		}
		if faces[bi].id == a.id {
			q.idNN++
		}
	}
	q.idNN /= float64(len(faces))
	q.idChance = float64(per-1) / float64(len(faces)-1)
	q.same /= ns
	q.diff /= nd
	return q
}

func (s *Scorer) detectPix(p pix) (float64, crop.Box) {
	a := s.detActs()
	defer s.dpl.Put(a)
	return s.det.predict(p, a)
}

func logQuality(t *testing.T, s *Scorer) quality {
	q := measure(s)
	t.Logf("held-out renders at %d px: %s", Side, q)
	return q
}

// TestShippedNetworks: the shipped networks find the faces of held-out
// renders and few in non-faces, retrieve captions far above chance, and
// tell held-out identities apart from their face crops.
func TestShippedNetworks(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	q := logQuality(t, s)
	if q.detected < 0.95 || q.falsePos > 0.1 || q.iou < 0.6 {
		t.Errorf("detector: %s", q)
	}
	if q.retrieval < 5*q.chance || q.idNN < 5*q.idChance || q.same-q.diff < 0.2 {
		t.Errorf("image-text model: %s", q)
	}
}
