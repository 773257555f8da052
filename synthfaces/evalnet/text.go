package evalnet

import (
	"hash/fnv"
	"strings"
	"unicode"

	"github.com/face0/face0/synthfaces"
)

// Describe is a sentence naming an identity's attributes, the part of a
// synthfaces image that captions never name. The evaluation's image-text
// model trains on it (alone, or before the caption), so that its image
// embedding carries who is shown as well as the scene; without it a
// contrastive model on synthfaces captions would have no reason to tell
// identities apart, and a face score from it would measure hats and
// backgrounds.
//
//	a person with <skin tone> skin, a <shape> face, <eye colour> <eye shape> eyes,
//	<brow shape> eyebrows, <hair> hair | a bald head, a <nose shape> nose,
//	<lip colour> lips[, a mustache | a goatee | a beard][, freckles][, a mole]
//
// Sizes far from the middle of their range add a word ("big eyes",
// "small nose", "wide face").
func Describe(a synthfaces.Identity) string {
	size := func(v, lo, hi float64, small, big string) string {
		t := (v - lo) / (hi - lo)
		switch {
		case t < 0.25:
			return small + " "
		case t > 0.75:
			return big + " "
		}
		return ""
	}
	parts := []string{
		a.SkinTone + " skin",
		article(size(a.FaceWidth, 0.93, 1.07, "narrow", "wide") + a.FaceShape + " face"),
		size(a.EyeSize, 0.8, 1.25, "small", "big") + a.EyeColor + " " + a.EyeShape + " eyes",
		a.BrowShape + " eyebrows",
	}
	if a.HairStyle == "bald" {
		parts = append(parts, "a bald head")
	} else {
		parts = append(parts, a.HairStyle+" "+a.HairColor+" hair")
	}
	parts = append(parts, article(size(a.NoseSize, 0.8, 1.25, "small", "big")+a.NoseShape+" nose"), a.LipColor+" lips")
	if a.FacialHair != "none" {
		parts = append(parts, article(a.FacialHair))
	}
	if a.Freckles {
		parts = append(parts, "freckles")
	}
	if a.Mole {
		parts = append(parts, "a mole")
	}
	return "a person with " + strings.Join(parts, ", ")
}

func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an " + w
	}
	return "a " + w
}

// textBuckets is the size of the text tower's hashed n-gram table.
const textBuckets = 8192

// ngrams are the hashed unigrams and bigrams of a text's lower-case words:
// the text tower's input. Bigrams bind a colour to its object ("red cap"
// against "red background"), which a bag of words cannot, in this
// caption grammar.
func ngrams(text string) []int32 {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && r != '-' })
	out := make([]int32, 0, 2*len(words))
	h := func(s string) int32 {
		f := fnv.New32a()
		f.Write([]byte(s))
		return int32(f.Sum32() % textBuckets)
	}
	for i, w := range words {
		out = append(out, h(w))
		if i > 0 {
			out = append(out, h(words[i-1]+" "+w))
		}
	}
	return out
}
