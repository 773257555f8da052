package evaluate

import (
	"image"

	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/synthfaces/evalnet"
)

// Sample is one generated (or reference) image and its scores.
type Sample struct {
	Setting   string `json:"setting"`
	Identity  int    `json:"identity"`
	Prompt    int    `json:"prompt"`
	Condition string `json:"condition"`
	Seed      int64  `json:"seed"`

	// Face is the paper's face alignment with an independent encoder: the
	// cosine between the evalnet image embeddings of the detected face
	// crops of this image and of the input face, 0 when no face is
	// detected here. Found says whether one was.
	Face  float64 `json:"face"`
	Found bool    `json:"found"`
	// FaceID is the cosine of the synthfaces-id-64 embeddings (the space
	// the model is conditioned in) of the whole images.
	FaceID float64 `json:"face_id"`
	// Text is the paper's text alignment: the cosine between the evalnet
	// embeddings of the image and of the prompt.
	Text float64 `json:"text"`
	// Probe is the share of the prompt's background colour, hat (any or
	// none) and glasses (any or none) that synthfaces' probes read back;
	// Attr holds each (1 found, 0 not).
	Probe float64    `json:"probe"`
	Attr  [3]float64 `json:"attr"`

	// Chance levels of the same image: Text and Probe against each of the
	// other prompts, averaged; Face and FaceID against the input faces of
	// every other identity, averaged (0 without a detected face).
	TextChance   float64    `json:"text_chance"`
	ProbeChance  float64    `json:"probe_chance"`
	AttrChance   [3]float64 `json:"attr_chance"`
	FaceChance   float64    `json:"face_chance"`
	FaceIDChance float64    `json:"face_id_chance"`

	Image image.Image `json:"-"`
}

// Overall is the paper's overall score: face plus text alignment.
func (s Sample) Overall() float64 { return s.Face + s.Text }

// AttrNames are the probe-able caption attributes, in Sample.Attr order.
var AttrNames = [3]string{"background colour", "hat (any vs none)", "glasses (any vs none)"}

// input is what scoring needs of one identity's input face.
type input struct {
	id      int
	face    []float32 // evalnet face-crop embedding (nil: no face found)
	faceID  []float32 // synthfaces.Embed
	pixels  image.Image
	noFound bool
}

// scorer scores images against the prompts and the input faces.
type scorer struct {
	net     *evalnet.Scorer
	prompts [][]float32 // evalnet text embeddings of Prompts
	inputs  []input
}

func newScorer(net *evalnet.Scorer, inputs []input) *scorer {
	s := &scorer{net: net, inputs: inputs}
	for _, p := range Prompts {
		s.prompts = append(s.prompts, net.Text(p.Text))
	}
	return s
}

// embedInput embeds an input face both ways.
func embedInput(net *evalnet.Scorer, id int, img image.Image) input {
	f, _, ok := net.Face(img)
	return input{id: id, face: f, faceID: synthfaces.Embed(img).Vector, pixels: img, noFound: !ok}
}

func agreement(s synthfaces.Scene, p synthfaces.Probed) [3]float64 {
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	return [3]float64{b(p.Background == s.Background), b(p.HasHat() == (s.Hat != "none")), b(p.HasGlasses() == (s.Glasses != "none"))}
}

func mean3(a [3]float64) float64 { return (a[0] + a[1] + a[2]) / 3 }

// score fills the scores of an image of identity index i for prompt p.
func (sc *scorer) score(x *Sample, i, p int, img image.Image) {
	in := sc.inputs[i]
	f, _, ok := sc.net.Face(img)
	x.Found = ok
	x.Face = synthfaces.Cosine(in.face, f)
	fid := synthfaces.Embed(img).Vector
	x.FaceID = synthfaces.Cosine(in.faceID, fid)
	v := sc.net.Image(img)
	x.Text = synthfaces.Cosine(v, sc.prompts[p])
	pr, _ := synthfaces.Measure(img)
	x.Attr = agreement(Prompts[p].Scene, pr)
	x.Probe = mean3(x.Attr)
	n := 0.0
	for q := range Prompts {
		if q == p {
			continue
		}
		x.TextChance += synthfaces.Cosine(v, sc.prompts[q])
		a := agreement(Prompts[q].Scene, pr)
		for k := range 3 {
			x.AttrChance[k] += a[k]
		}
		n++
	}
	x.TextChance /= n
	for k := range 3 {
		x.AttrChance[k] /= n
	}
	x.ProbeChance = mean3(x.AttrChance)
	n = 0
	for j, o := range sc.inputs {
		if j == i {
			continue
		}
		x.FaceChance += synthfaces.Cosine(o.face, f)
		x.FaceIDChance += synthfaces.Cosine(o.faceID, fid)
		n++
	}
	if n > 0 {
		x.FaceChance /= n
		x.FaceIDChance /= n
	}
}
