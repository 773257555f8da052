package evaluate

import (
	"math"
	"testing"

	"github.com/face0/face0/synthfaces"
	"github.com/face0/face0/synthfaces/evalnet"
)

// TestGroupedCI: the interval is Student's t over the per-identity means,
// not over the samples, and the SD is over the samples.
func TestGroupedCI(t *testing.T) {
	// Three identities, two samples each; identity means 1, 2, 6.
	v := []float64{0, 2, 1, 3, 6, 6}
	ids := []int{10, 10, 11, 11, 12, 12}
	s := stat(v, ids)
	// Means 1, 2, 6: mean 3, SD sqrt(7), t(2) = 4.303.
	h := 4.303 * math.Sqrt(7) / math.Sqrt(3)
	if !near(s.Mean, 3) || !near(s.Lo, 3-h) || !near(s.Hi, 3+h) {
		t.Errorf("grouped interval: %+v, want 3 ± %.4f", s, h)
	}
	if _, sd := meanSD(v); !near(s.SD, sd) || !near(sd, math.Sqrt(32.0/5)) {
		t.Errorf("SD over samples %.6f, want %.6f", s.SD, math.Sqrt(32.0/5))
	}
	// Treating the 6 samples as independent gives a narrower interval:
	// the grouped one must be wider here.
	_, sd := meanSD(v)
	if naive := 2.571 * sd / math.Sqrt(6); s.Hi-s.Mean <= naive {
		t.Errorf("grouped half-width %.3f is not wider than the independent one %.3f", s.Hi-s.Mean, naive)
	}
}

func TestTQuantile(t *testing.T) {
	for _, c := range []struct {
		df   int
		want float64
	}{{1, 12.706}, {19, 2.093}, {30, 2.042}, {40, 2.021}, {60, 2.000}, {120, 1.980}} {
		if got := tQuantile975(c.df); math.Abs(got-c.want) > 1.5e-3 {
			t.Errorf("t(0.975, %d) = %.4f, want %.3f", c.df, got, c.want)
		}
	}
}

// TestBestOfByOverall: Table 2 picks the seed with the best face + text,
// not the best face.
func TestBestOfByOverall(t *testing.T) {
	s := []Sample{
		{Identity: 1, Prompt: 0, Seed: 0, Face: 0.9, Text: 0.0},
		{Identity: 1, Prompt: 0, Seed: 1, Face: 0.5, Text: 0.6},
		{Identity: 1, Prompt: 0, Seed: 2, Face: 0.1, Text: 0.2},
		{Identity: 1, Prompt: 1, Seed: 0, Face: 0.2, Text: 0.2},
		{Identity: 1, Prompt: 1, Seed: 1, Face: 0.9, Text: 0.9}, // beyond n = 1
	}
	b := bestOf(s, 3)
	if len(b) != 2 || b[0].Seed != 1 || b[1].Seed != 1 {
		t.Errorf("best of 3: %+v", b)
	}
	if b := bestOf(s, 1); b[1].Seed != 0 {
		t.Errorf("best of 1 took seed %d", b[1].Seed)
	}
}

// TestPairedDiff pairs identities: a constant advantage has a zero-width
// interval, however much the identities differ.
func TestPairedDiff(t *testing.T) {
	var a, b []Sample
	for id := range 5 {
		base := float64(id) * 0.3
		a = append(a, Sample{Identity: id, Face: base + 0.1, Text: base})
		b = append(b, Sample{Identity: id, Face: base, Text: base})
	}
	d := pairedDiff("x", a, b)
	if !near(d.Face.Mean, 0.1) || !near(d.Face.Lo, 0.1) || !near(d.Face.Hi, 0.1) || !near(d.Text.Mean, 0) {
		t.Errorf("paired difference: %+v", d)
	}
}

// TestChanceAgainstAllOtherPrompts scores a real render of prompt 0's
// scene (a hat and glasses): its attributes against the other nine
// prompts give the honest chance level (background 0: every prompt has its
// own colour; hat and glasses 4/9: four of the other nine have one).
func TestChanceAgainstAllOtherPrompts(t *testing.T) {
	net, err := evalnet.Load()
	if err != nil {
		t.Fatal(err)
	}
	var inputs []input
	for i := range 3 {
		id := synthfaces.HeldOutBase + i
		inputs = append(inputs, embedInput(net, id, synthfaces.RenderSample(1, id, 0, synthfaces.RenderOptions{Size: 128}).Pixels))
	}
	sc := newScorer(net, inputs)
	a := synthfaces.NewIdentity(1, synthfaces.HeldOutBase)
	_, v := synthfaces.NewScene(1, synthfaces.HeldOutBase, 1000)
	img, _ := synthfaces.Render(a, Prompts[0].Scene, v, synthfaces.RenderOptions{Size: 32})
	var x Sample
	sc.score(&x, 0, 0, img)
	if x.Attr != [3]float64{1, 1, 1} {
		t.Fatalf("probes on a render of prompt 0: %v", x.Attr)
	}
	if want := [3]float64{0, 4.0 / 9, 4.0 / 9}; !near(x.AttrChance[0], want[0]) || !near(x.AttrChance[1], want[1]) || !near(x.AttrChance[2], want[2]) {
		t.Errorf("attribute chance %v, want %v", x.AttrChance, want)
	}
	if !x.Found || x.Face <= x.FaceChance || x.Text <= x.TextChance {
		t.Errorf("a render of the identity in the prompt's scene: face %.3f (found %v, chance %.3f), text %.3f (chance %.3f)", x.Face, x.Found, x.FaceChance, x.Text, x.TextChance)
	}
}

func TestPrompts(t *testing.T) {
	groups := map[string]int{}
	bg := map[string]bool{}
	hats, glasses := 0, 0
	for _, p := range Prompts {
		groups[p.Group]++
		bg[p.Scene.Background] = true
		if p.Scene.Hat != "none" {
			hats++
		}
		if p.Scene.Glasses != "none" {
			glasses++
		}
		if s, ok := synthfaces.ParseCaption(p.Text); !ok || s != p.Scene {
			t.Errorf("prompt %q does not parse back to its scene (%+v, %v)", p.Text, s, ok)
		}
	}
	if groups[GroupPhoto] != 5 || groups[GroupArtistic] != 5 || len(bg) != 10 || hats != 5 || glasses != 5 {
		t.Errorf("prompts: groups %v, %d backgrounds, %d hats, %d glasses", groups, len(bg), hats, glasses)
	}
	if got := withToken(Prompts[0].Text, "sks"); got != "a photo portrait of a smiling sks person wearing a red cap, round glasses and a blue shirt, on a yellow background" {
		t.Errorf("withToken: %q", got)
	}
}
