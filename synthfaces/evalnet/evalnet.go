// Package evalnet holds the evaluation's own networks for synthfaces
// images, trained here and never used to train or condition a Face0 model:
//
//   - a face detector (Scorer.Detect): is there a synthfaces face in the
//     image, and where (one box; the data has one face per image, so the
//     paper's "largest face" is that one);
//   - a CLIP-style image-text model (Scorer.Image, Scorer.Text): a small
//     convolutional image tower and a hashed n-gram text tower trained
//     contrastively on renders paired with their captions and with
//     descriptions of who is shown (Describe).
//
// With them the evaluation follows the Face0 paper's protocol (§4.3): text
// alignment is the cosine between the image-text model's embeddings of the
// generated image and of the prompt; face alignment is the cosine between
// its image embeddings of the largest detected face (the Face0 crop) of the
// generated image and of the input face, 0 when no face is detected.
//
// They are independent of the model being scored: other identities (seeds
// no dataset uses), other architectures (convolutions, where the identity
// embedder that conditions the model, synthfaces.Embed, is a one-layer
// MLP on the whole image; n-grams, where the model's text encoder is a
// CLIP transformer), another objective (contrastive image-text, where
// synthfaces.Embed regresses attributes). The weights ship in evalnet.bin
// (int8 rows); TestTrainNetworks rebuilds it byte for byte
// (EVALNET_TRAIN=1), and TestTrainingFingerprint checks in every test run
// that a shortened training still gives the recorded result.
package evalnet

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"

	"github.com/face0/face0/synthfaces"
)

//go:embed evalnet.bin
var shipped []byte

// Scorer holds both networks.
type Scorer struct {
	det  *detector
	clip *clipModel
	id   string
	pool sync.Pool // *acts of the image tower
	dpl  sync.Pool // *acts of the detector
}

var load = sync.OnceValues(func() (*Scorer, error) { return decode(shipped) })

// Load returns the shipped networks. It fails, rather than training
// something else in their place, when evalnet.bin does not match the
// renderer's Version or the networks' shapes: scores from other networks
// would not be comparable with the recorded ones.
func Load() (*Scorer, error) { return load() }

// ID names the weights (a hash of the file), for reports.
func (s *Scorer) ID() string { return s.id }

// Detect finds the face in an image of any size (brought to Side×Side
// first); ok is false when the face probability is under Threshold.
func (s *Scorer) Detect(img image.Image) (f Face, ok bool) {
	a := s.detActs()
	defer s.dpl.Put(a)
	score, b := s.det.predict(toPix(img), a)
	kx := float64(img.Bounds().Dx()) / Side
	ky := float64(img.Bounds().Dy()) / Side
	mn := img.Bounds().Min
	f = Face{Score: score}
	f.Box.X1, f.Box.Y1 = float64(mn.X)+b.X1*kx, float64(mn.Y)+b.Y1*ky
	f.Box.X2, f.Box.Y2 = float64(mn.X)+b.X2*kx, float64(mn.Y)+b.Y2*ky
	return f, score >= Threshold
}

// FaceCrop is the Face0 crop (the detected box grown by the paper's
// margins, squared) of img at Side×Side, and the detection; ok is false
// when no face is found.
func (s *Scorer) FaceCrop(img image.Image) (crop image.Image, f Face, ok bool) {
	p, f, ok := s.faceCrop(img)
	if !ok {
		return nil, f, false
	}
	return p.Image(), f, true
}

func (s *Scorer) faceCrop(img image.Image) (pix, Face, bool) {
	p := toPix(img)
	a := s.detActs()
	score, b := s.det.predict(p, a)
	s.dpl.Put(a)
	f := Face{Box: b, Score: score}
	if score < Threshold {
		return nil, f, false
	}
	return cropPix(p, faceRegion(b)), f, true
}

// Face is the image embedding of the face crop of img (Dim values, unit
// norm); ok is false, and the vector nil, when no face is found.
func (s *Scorer) Face(img image.Image) (v []float32, f Face, ok bool) {
	p, f, ok := s.faceCrop(img)
	if !ok {
		return nil, f, false
	}
	return s.embed(p), f, true
}

// Image is the image embedding of the whole image (Dim values, unit norm).
func (s *Scorer) Image(img image.Image) []float32 { return s.embed(toPix(img)) }

// Text is the text embedding of a caption or description (Dim values,
// unit norm).
func (s *Scorer) Text(text string) []float32 { return s.clip.textEmbedding(text) }

func (s *Scorer) embed(p pix) []float32 {
	a, _ := s.pool.Get().(*acts)
	if a == nil {
		a = s.clip.img.newActs()
	}
	defer s.pool.Put(a)
	return s.clip.image(p, a)
}

func (s *Scorer) detActs() *acts {
	a, _ := s.dpl.Get().(*acts)
	if a == nil {
		a = s.det.net.newActs()
	}
	return a
}

// ---- weight file ----

const magic = "sfevnet1"

func header() [9]uint32 {
	h := [9]uint32{synthfaces.Version, textBuckets, Dim}
	for i := range 3 {
		h[3+i] = uint32(detectorChannels[i])
		h[6+i] = uint32(clipChannels[i])
	}
	return h
}

func encode(d *detector, c *clipModel) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, header())
	for _, n := range []*cnn{d.net, c.img} {
		writeNet(&b, n)
	}
	synthfaces.WriteInt8Rows(&b, c.text, Dim)
	return b.Bytes()
}

func decode(data []byte) (*Scorer, error) {
	r := bytes.NewReader(data)
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(r, m); err != nil || string(m) != magic {
		return nil, errors.New("evalnet: evalnet.bin is not an evalnet weight file; rebuild it with EVALNET_TRAIN=1 go test -run TestTrainNetworks ./synthfaces/evalnet")
	}
	var h [9]uint32
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil || h != header() {
		return nil, fmt.Errorf("evalnet: evalnet.bin was trained for renderer version/shapes %v, this build has %v; rebuild it with EVALNET_TRAIN=1 go test -run TestTrainNetworks ./synthfaces/evalnet", h, header())
	}
	z := newRand(0)
	d := &detector{net: newCNN(detectorChannels, 5, z)}
	c := &clipModel{img: newCNN(clipChannels, Dim, z), text: make([]float32, textBuckets*Dim)}
	for _, n := range []*cnn{d.net, c.img} {
		if err := readNet(r, n); err != nil {
			return nil, fmt.Errorf("evalnet: evalnet.bin: %w", err)
		}
	}
	if err := synthfaces.ReadInt8Rows(r, c.text, Dim); err != nil {
		return nil, fmt.Errorf("evalnet: evalnet.bin: %w", err)
	}
	if r.Len() != 0 {
		return nil, errors.New("evalnet: evalnet.bin: trailing bytes")
	}
	sum := sha256.Sum256(data)
	return &Scorer{det: d, clip: c, id: "evalnet/" + hex.EncodeToString(sum[:8])}, nil
}

// Weight matrices are int8 rows with a float32 scale each (as synthfaces'
// networks store theirs); biases are float32.
func writeNet(b *bytes.Buffer, n *cnn) {
	for _, c := range n.convs {
		synthfaces.WriteInt8Rows(b, c.w, c.cout)
		binary.Write(b, binary.LittleEndian, c.b)
	}
	synthfaces.WriteInt8Rows(b, n.fc.w, n.fc.in)
	binary.Write(b, binary.LittleEndian, n.fc.b)
}

func readNet(r *bytes.Reader, n *cnn) error {
	for _, c := range n.convs {
		if err := synthfaces.ReadInt8Rows(r, c.w, c.cout); err != nil {
			return err
		}
		if err := binary.Read(r, binary.LittleEndian, c.b); err != nil {
			return err
		}
	}
	if err := synthfaces.ReadInt8Rows(r, n.fc.w, n.fc.in); err != nil {
		return err
	}
	return binary.Read(r, binary.LittleEndian, n.fc.b)
}
