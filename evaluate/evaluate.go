// Package evaluate measures a Face0 model trained on synthfaces the way the
// paper's Tables 1 and 2 do (FACE0-PAPER.md §4), at toy scale, by running
// real workflows through the engine and the face0 nodes:
//
//   - face alignment: the cosine between the synthfaces identity embedding
//     (synthfaces.Embed) of the input face and that of the generated image;
//   - text alignment: the share of the caption's probe-able scene
//     attributes (background colour, hat, glasses) that synthfaces.Measure
//     reads back from the generated image;
//
// for three conditionings of the same prompts and noise seeds: Face0 with
// the input face's embedding, Face0 with a RandomEmbedding, and no face (the
// face tokens zeroed). Table 1 averages over Seeds samples; Table 2 keeps,
// per prompt, the best of BestOf seeds by face alignment.
//
// The inputs are held-out identities (synthfaces.HeldOutBase on), which no
// training saw: each identity's image 0 is the input face, its images
// 1..Prompts give the captions (and the scenes the text alignment checks).
package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/plugins/value"
	"github.com/face0/face0/synthfaces"
)

// Conditions, in table order.
const (
	CondFace   = "Face0, input face"
	CondRandom = "Face0, random embedding"
	CondNone   = "no face"
)

// Conditions lists the compared conditionings.
var Conditions = []string{CondFace, CondRandom, CondNone}

// Options configure Run. Zero fields take the defaults in brackets.
type Options struct {
	App   *app.App
	Model string // model name in the models folder

	DatasetSeed uint64  // synthfaces seed of the held-out identities [1]
	Identities  int     // held-out identities [20]
	Prompts     int     // prompts per identity [3]
	Seeds       int     // samples per prompt and condition for Table 1 [4]
	BestOf      int     // seeds per prompt and condition for Table 2 [8]
	FirstSeed   int64   // noise seed of the first sample [0]
	Steps       int     // sampler steps [25]
	Scheduler   string  // [ddim]
	Eta         float64 // DDIM's η (0: deterministic; 1: DDPM-like) [0]
	W           float64 // guidance weight w [the model's]
	// C and A are guidance c and a; both zero means the paper's c = 1,
	// a = 0 (the text-only setting c = a = 0 is not a comparison Table 1
	// makes).
	C, A float64

	// Inputs is where the input faces are written for LoadImage [the app's
	// input folder, sub-folder "evaluate"].
	Inputs   string
	Progress func(done, total int)
}

// Sample is one generated image and its scores.
type Sample struct {
	Identity  int     `json:"identity"`
	Prompt    int     `json:"prompt"`
	Condition string  `json:"condition"`
	Seed      int64   `json:"seed"`
	Face      float64 `json:"face_alignment"`
	Text      float64 `json:"text_alignment"`
	// Chance is the text alignment against another identity's caption
	// (the next identity's, same prompt index): what matching by luck gives.
	Chance float64 `json:"text_chance"`
	// Attr and AttrChance hold, per attribute (AttrNames), 1 where the probe
	// found it as the caption (or the other caption) says.
	Attr       [3]float64  `json:"attributes"`
	AttrChance [3]float64  `json:"attributes_chance"`
	Image      image.Image `json:"-"`
}

// AttrNames are the probe-able caption attributes, in Sample.Attr order.
var AttrNames = [3]string{"background colour", "hat (any vs none)", "glasses (any vs none)"}

// score reads the image once and compares it with a scene.
func score(s synthfaces.Scene, p synthfaces.Probed) (attr [3]float64, frac float64) {
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	attr = [3]float64{b(p.Background == s.Background), b(p.HasHat() == (s.Hat != "none")), b(p.HasGlasses() == (s.Glasses != "none"))}
	return attr, (attr[0] + attr[1] + attr[2]) / 3
}

// Row is one line of a table.
type Row struct {
	Condition string  `json:"condition"`
	Face      float64 `json:"face_alignment"`
	FaceSE    float64 `json:"face_alignment_se"`
	Text      float64 `json:"text_alignment"`
	TextSE    float64 `json:"text_alignment_se"`
	Chance    float64 `json:"text_chance"`
	// Attr and AttrChance are the per-attribute rates (AttrNames).
	Attr       [3]float64 `json:"attributes"`
	AttrChance [3]float64 `json:"attributes_chance"`
	N          int        `json:"n"`
}

// Report is Run's result.
type Report struct {
	Model   string   `json:"model"`
	Options struct { // what was run
		DatasetSeed uint64  `json:"dataset_seed"`
		Identities  int     `json:"identities"`
		Prompts     int     `json:"prompts"`
		Seeds       int     `json:"seeds"`
		BestOf      int     `json:"best_of"`
		Steps       int     `json:"steps"`
		Scheduler   string  `json:"scheduler"`
		Eta         float64 `json:"eta"`
		W           float64 `json:"w"`
		C           float64 `json:"c"`
		A           float64 `json:"a"`
	} `json:"options"`
	Table1 []Row `json:"table1"`
	Table2 []Row `json:"table2"`
	// Reference: the held-out identity's own renders 1..Prompts against its
	// input face (face alignment an image of the same identity reaches) and
	// against their captions (how often the probes read a real render right).
	Reference Row      `json:"reference"`
	Samples   []Sample `json:"samples"`
	Seconds   float64  `json:"seconds"`
	// SecondsPerImage is the median wall time per generated image (the
	// workflow run of one identity divided by its images).
	SecondsPerImage float64 `json:"seconds_per_image"`
	// Inputs are the input faces by identity, in order.
	Inputs []image.Image `json:"-"`
	// Captions are the prompts by identity and prompt index.
	Captions [][]string `json:"captions"`
}

func (o *Options) defaults() error {
	if o.App == nil || o.Model == "" {
		return errors.New("evaluate: an App and a model name are required")
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	if o.DatasetSeed == 0 {
		o.DatasetSeed = 1
	}
	def(&o.Identities, 20)
	def(&o.Prompts, 3)
	def(&o.Seeds, 4)
	def(&o.BestOf, 8)
	def(&o.Steps, 25)
	if o.Scheduler == "" {
		o.Scheduler = "ddim"
	}
	if o.C == 0 && o.A == 0 {
		o.C = 1
	}
	if o.Inputs == "" {
		o.Inputs = filepath.Join(o.App.Dirs.Input, "evaluate")
	}
	if o.Progress == nil {
		o.Progress = func(int, int) {}
	}
	return nil
}

// Run generates and scores every sample; see the package comment.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Inputs, 0o755); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	rep := &Report{Model: o.Model}
	ro := &rep.Options
	ro.DatasetSeed, ro.Identities, ro.Prompts, ro.Seeds, ro.BestOf = o.DatasetSeed, o.Identities, o.Prompts, o.Seeds, o.BestOf
	ro.Steps, ro.Scheduler, ro.Eta, ro.W, ro.C, ro.A = o.Steps, o.Scheduler, o.Eta, o.W, o.C, o.A

	n := max(o.Seeds, o.BestOf)
	t0 := time.Now()
	var perImage []float64
	var ref []Sample
	for i := range o.Identities {
		id := synthfaces.HeldOutBase + i
		in := synthfaces.RenderSample(o.DatasetSeed, id, 0, synthfaces.RenderOptions{Size: 128})
		name := fmt.Sprintf("heldout-%d-%d.png", o.DatasetSeed, id)
		if err := writePNG(filepath.Join(o.Inputs, name), in.Pixels); err != nil {
			return nil, err
		}
		inEmb := synthfaces.Embed(in.Pixels).Vector
		rep.Inputs = append(rep.Inputs, in.Pixels)
		var caps []string
		var scenes, other []synthfaces.Scene
		for p := range o.Prompts {
			s := synthfaces.RenderSample(o.DatasetSeed, id, p+1, synthfaces.RenderOptions{Size: 128})
			caps = append(caps, s.Caption)
			scenes = append(scenes, s.Scene)
			nextID := synthfaces.HeldOutBase + (i+1)%o.Identities
			sc, _ := synthfaces.NewScene(o.DatasetSeed, nextID, p+1)
			other = append(other, sc)
			pr, _ := synthfaces.Measure(s.Pixels)
			a, f := score(s.Scene, pr)
			ac, fc := score(sc, pr)
			ref = append(ref, Sample{Identity: id, Prompt: p, Condition: "reference",
				Face: synthfaces.Cosine(inEmb, synthfaces.Embed(s.Pixels).Vector), Text: f, Chance: fc, Attr: a, AttrChance: ac})
		}
		rep.Captions = append(rep.Captions, caps)

		wf, err := buildWorkflow(o, filepath.Join("evaluate", name), caps, int64(i), n)
		if err != nil {
			return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
		}
		plan, err := o.App.Catalog.Compile(wf, decodeIDs(o.Prompts))
		if err != nil {
			return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
		}
		t1 := time.Now()
		res, err := o.App.Engine.Run(ctx, plan, engine.RunOptions{PromptID: fmt.Sprintf("evaluate-%d", id), NoCache: true})
		if err != nil {
			return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
		}
		perImage = append(perImage, time.Since(t1).Seconds()/float64(len(Conditions)*o.Prompts*n))
		for ci, cond := range Conditions {
			for p := range o.Prompts {
				node := decodeID(ci, p)
				out, ok := res.Outputs[node]
				if !ok {
					return nil, fmt.Errorf("evaluate: identity %d: no output from %s", id, node)
				}
				imgs, err := value.AsImages(out.Values["IMAGE"])
				if err != nil {
					return nil, fmt.Errorf("evaluate: identity %d, %s: %w", id, node, err)
				}
				if len(imgs) != n {
					return nil, fmt.Errorf("evaluate: identity %d, %s: %d images, want %d", id, node, len(imgs), n)
				}
				for k, img := range imgs {
					pr, _ := synthfaces.Measure(img)
					a, f := score(scenes[p], pr)
					ac, fc := score(other[p], pr)
					rep.Samples = append(rep.Samples, Sample{
						Identity: id, Prompt: p, Condition: cond, Seed: o.FirstSeed + int64(k),
						Face: synthfaces.Cosine(inEmb, synthfaces.Embed(img).Vector), Text: f, Chance: fc, Attr: a, AttrChance: ac, Image: img,
					})
				}
			}
		}
		o.Progress(i+1, o.Identities)
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.SecondsPerImage = median(perImage)
	rep.Table1, rep.Table2 = tables(rep.Samples, o.Seeds, o.BestOf)
	rep.Reference = summarize("real renders of the identity", ref)
	return rep, nil
}

// buildWorkflow is one identity's graph: the input face embedded, one
// random embedding, each prompt encoded, and a sampler + decoder per
// (condition, prompt), all with the same seeds.
func buildWorkflow(o Options, input string, caps []string, idx int64, batch int) (*workflow.Workflow, error) {
	var nodes []map[string]any
	add := func(id, typ string, in map[string]any) {
		nodes = append(nodes, map[string]any{"id": id, "type": typ, "inputs": in})
	}
	link := func(node, out string) map[string]any { return map[string]any{"node": node, "output": out} }
	add("load", "LoadImage", map[string]any{"image": input})
	add("embed", "EmbedFace", map[string]any{"image": link("load", "IMAGE"), "model": synthfaces.IDSpace})
	// A different random face per identity, from the model's fitted mixture.
	add("random", "RandomEmbedding", map[string]any{"model": o.Model, "seed": 1000 + idx})
	for p, c := range caps {
		add("text"+strconv.Itoa(p), "EncodeText", map[string]any{"model": o.Model, "text": c})
	}
	for ci := range Conditions {
		for p := range caps {
			in := map[string]any{
				"model": o.Model, "positive": link("text"+strconv.Itoa(p), "CONDITIONING"),
				"seed": o.FirstSeed, "steps": o.Steps, "batch_size": batch, "scheduler": o.Scheduler,
				"c": o.C, "a": o.A, "eta": o.Eta,
			}
			if o.W != 0 {
				in["w"] = o.W
			}
			switch Conditions[ci] {
			case CondFace:
				in["face_embedding"] = link("embed", "embedding")
			case CondRandom:
				in["face_embedding"] = link("random", "embedding")
			}
			s := fmt.Sprintf("sample%d_%d", ci, p)
			add(s, "Face0Sampler", in)
			add(decodeID(ci, p), "Decode", map[string]any{"model": o.Model, "latent": link(s, "LATENT")})
		}
	}
	// Through JSON, so the literals are what a workflow file would hold.
	data, err := json.Marshal(map[string]any{"version": workflow.Version, "name": "evaluate", "nodes": nodes})
	if err != nil {
		return nil, err
	}
	wf, _, err := workflow.Parse(data)
	return wf, err
}

func decodeID(cond, prompt int) string { return fmt.Sprintf("decode%d_%d", cond, prompt) }

func decodeIDs(prompts int) []string {
	var ids []string
	for c := range Conditions {
		for p := range prompts {
			ids = append(ids, decodeID(c, p))
		}
	}
	return ids
}

// tables reduces the samples: Table 1 averages each condition's first
// seeds samples per prompt; Table 2 keeps, per prompt, the sample with the
// best face alignment among the first bestOf.
func tables(samples []Sample, seeds, bestOf int) (t1, t2 []Row) {
	type key struct {
		id, p int
		cond  string
	}
	groups := map[key][]Sample{}
	var order []key
	for _, s := range samples {
		k := key{s.Identity, s.Prompt, s.Condition}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	for _, cond := range Conditions {
		var all, best []Sample
		for _, k := range order {
			if k.cond != cond {
				continue
			}
			g := groups[k]
			sort.Slice(g, func(i, j int) bool { return g[i].Seed < g[j].Seed })
			all = append(all, g[:min(seeds, len(g))]...)
			b := g[0]
			for _, s := range g[:min(bestOf, len(g))] {
				if s.Face > b.Face {
					b = s
				}
			}
			best = append(best, b)
		}
		t1 = append(t1, summarize(cond, all))
		t2 = append(t2, summarize(cond, best))
	}
	return t1, t2
}

func summarize(cond string, s []Sample) Row {
	r := Row{Condition: cond, N: len(s)}
	if len(s) == 0 {
		return r
	}
	var f, t, c []float64
	for _, x := range s {
		f = append(f, x.Face)
		t = append(t, x.Text)
		c = append(c, x.Chance)
	}
	r.Face, r.FaceSE = meanSE(f)
	r.Text, r.TextSE = meanSE(t)
	r.Chance, _ = meanSE(c)
	for _, x := range s {
		for k := range 3 {
			r.Attr[k] += x.Attr[k] / float64(len(s))
			r.AttrChance[k] += x.AttrChance[k] / float64(len(s))
		}
	}
	return r
}

func meanSE(v []float64) (mean, se float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/float64(len(v)-1)) / math.Sqrt(float64(len(v)))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("evaluate: %w", err)
	}
	return f.Close()
}
