package evaluate

import "github.com/face0/face0/synthfaces"

// Prompt groups, reported apart as the paper reports SYN and LFW apart
// (its 10 prompts were 5 photo-realistic and 5 artistic).
const (
	GroupPhoto    = "photo"
	GroupArtistic = "artistic"
	GroupAll      = "all"
)

// Groups lists the prompt groups in table order.
var Groups = []string{GroupPhoto, GroupArtistic, GroupAll}

// Prompt is one of the fixed prompts every identity is sampled with.
type Prompt struct {
	Group string           `json:"group"`
	Text  string           `json:"text"`
	Scene synthfaces.Scene `json:"scene"`
}

// Prompts are the evaluation's 10 fixed prompts: 5 photo-like (the photo
// style) and 5 artistic (cartoon, sketch and pop-art), written in the
// dataset's caption grammar (synthfaces.Caption) so that the probes can
// check them. Each has its own background colour; 5 have a hat and 5
// glasses.
var Prompts = func() []Prompt {
	scenes := []struct {
		group string
		s     synthfaces.Scene
	}{
		{GroupPhoto, synthfaces.Scene{Style: "photo", Expression: "smile", Hat: "cap", HatColor: "red", Glasses: "round", ClothingColor: "blue", Background: "yellow"}},
		{GroupPhoto, synthfaces.Scene{Style: "photo", Expression: "neutral", Hat: "none", Glasses: "none", ClothingColor: "green", Background: "teal"}},
		{GroupPhoto, synthfaces.Scene{Style: "photo", Expression: "open", Hat: "beanie", HatColor: "purple", Glasses: "sunglasses", ClothingColor: "white", Background: "red"}},
		{GroupPhoto, synthfaces.Scene{Style: "photo", Expression: "smile", Hat: "none", Glasses: "square", ClothingColor: "orange", Background: "blue"}},
		{GroupPhoto, synthfaces.Scene{Style: "photo", Expression: "neutral", Hat: "top hat", HatColor: "black", Glasses: "none", ClothingColor: "pink", Background: "gray"}},
		{GroupArtistic, synthfaces.Scene{Style: "cartoon", Expression: "smile", Hat: "none", Glasses: "round", ClothingColor: "yellow", Background: "purple"}},
		{GroupArtistic, synthfaces.Scene{Style: "sketch", Expression: "neutral", Hat: "cap", Glasses: "none", Background: "green"}},
		{GroupArtistic, synthfaces.Scene{Style: "popart", Expression: "open", Hat: "none", Glasses: "sunglasses", ClothingColor: "red", Background: "pink"}},
		{GroupArtistic, synthfaces.Scene{Style: "cartoon", Expression: "neutral", Hat: "beanie", HatColor: "teal", Glasses: "none", ClothingColor: "black", Background: "orange"}},
		{GroupArtistic, synthfaces.Scene{Style: "popart", Expression: "smile", Hat: "none", Glasses: "none", ClothingColor: "green", Background: "white"}},
	}
	out := make([]Prompt, len(scenes))
	for i, x := range scenes {
		out[i] = Prompt{Group: x.group, Text: synthfaces.Caption(x.s), Scene: x.s}
	}
	return out
}()

// Setting is one sampler setting the whole evaluation runs with.
type Setting struct {
	Name      string  `json:"name"`
	Scheduler string  `json:"scheduler"`
	Steps     int     `json:"steps"`
	Eta       float64 `json:"eta"` // DDIM's η: 0 deterministic, 1 DDPM-like
	W         float64 `json:"w"`
	C         float64 `json:"c"`
	A         float64 `json:"a"`
	About     string  `json:"about"`
}

// The two settings: the paper's (§4.1: "standard DDIM sampling", c = 1,
// w = 7.5 from §2.2; the paper does not give its step count) and the
// shipped default workflow's (examples/workflows/face0-default.json).
var (
	PaperSetting = Setting{Name: "paper", Scheduler: "ddim", Steps: 50, Eta: 0, W: 7.5, C: 1, A: 0,
		About: "the paper's sampling: deterministic DDIM (η 0), w 7.5, c 1, a 0; 50 steps (the paper does not say how many)"}
	ShippedSetting = Setting{Name: "shipped", Scheduler: "ddim", Steps: 100, Eta: 1, W: 3, C: 1, A: 0,
		About: "the shipped default workflow's sampling: DDIM with η 1 (fresh noise each step), 100 steps, w 3, c 1, a 0"}
)

// Conditions, in table order.
const (
	CondFace     = "Face0, input face"
	CondFineTune = "fine-tuning baseline"
	CondRandom   = "Face0, random embedding"
	CondNone     = "no face"
)

// Conditions lists the compared conditionings: Face0 given the input face;
// the per-identity fine-tuned model (FineTune) sampled without a face;
// Face0 given a random embedding from the model's mixture (a different
// one per identity); and the model without a face (face tokens zeroed).
var Conditions = []string{CondFace, CondFineTune, CondRandom, CondNone}

// CondReference labels real renders of the identity in each prompt's
// scene at the model's 32 px: what a perfect model would draw.
const CondReference = "real renders (ceiling)"
