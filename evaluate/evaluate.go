// Package evaluate measures a Face0 model trained on synthfaces by the
// Face0 paper's protocol (FACE0-PAPER.md §4), at toy scale, by running
// real workflows through the engine and the face0 nodes.
//
// Held-out identities (synthfaces.HeldOutBase on, which no training and no
// scoring network saw) give the input faces (each identity's image 0).
// Every identity is sampled with the same 10 fixed prompts (Prompts: 5
// photo-like, 5 artistic) and Seeds noise seeds, in each Setting (the
// paper's sampling and the shipped defaults), under four conditionings
// (Conditions): Face0 with the input face, a per-identity fine-tuning
// baseline in DreamBooth's spirit (FineTune), Face0 with a random
// embedding, and no face. Each image is scored as the paper scores
// (score.go): text alignment and face alignment from an image-text model
// that did not condition the model (synthfaces/evalnet), face alignment
// on the detected face crop and 0 when no face is found, overall = face +
// text; beside them the synthfaces-id-64 face cosine (the space the model
// is conditioned in) and synthfaces' attribute probes. Table 1 averages
// every seed, Table 2 keeps per (identity, prompt) the best of the seeds by
// overall score. Intervals are grouped by identity (stats.go).
package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
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
	"github.com/face0/face0/synthfaces/evalnet"
)

// Options configure Run. Zero fields take the defaults in brackets.
type Options struct {
	App   *app.App
	Model string // model name in the App's models folder

	DatasetSeed uint64 // synthfaces seed of the held-out identities [1]
	Identities  int    // held-out identities [20]
	// FirstIdentity skips that many held-out identities (the fine-tuning
	// baseline's settings were chosen on identities 20-22, which the
	// default 20 do not include) [0].
	FirstIdentity int
	Seeds         int   // noise seeds per prompt and conditioning [8]
	FirstSeed     int64 // [0]
	// Settings are the sampler settings, the first being the main one
	// [PaperSetting, ShippedSetting].
	Settings []Setting
	// Prompts selects prompts by index [all of Prompts].
	Prompts []int

	FineTune   FineTune
	NoFineTune bool // leave the fine-tuning baseline out (its rows stay empty)

	// Inputs is where the input faces are written for LoadImage [the app's
	// input folder, sub-folder "evaluate"].
	Inputs   string
	Progress func(msg string)
}

func (o *Options) defaults() error {
	if o.App == nil || o.Model == "" {
		return errors.New("evaluate: an App and a model name are required")
	}
	if o.DatasetSeed == 0 {
		o.DatasetSeed = 1
	}
	if o.Identities <= 0 {
		o.Identities = 20
	}
	if o.Seeds <= 0 {
		o.Seeds = 8
	}
	if len(o.Settings) == 0 {
		o.Settings = []Setting{PaperSetting, ShippedSetting}
	}
	if len(o.Prompts) == 0 {
		for p := range Prompts {
			o.Prompts = append(o.Prompts, p)
		}
	}
	for _, p := range o.Prompts {
		if p < 0 || p >= len(Prompts) {
			return fmt.Errorf("evaluate: prompt %d: there are %d prompts (0-%d)", p, len(Prompts), len(Prompts)-1)
		}
	}
	o.FineTune.defaults()
	if o.Inputs == "" {
		o.Inputs = filepath.Join(o.App.Dirs.Input, "evaluate")
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return nil
}

// Report is Run's result.
type Report struct {
	Model       string    `json:"model"`
	DatasetSeed uint64    `json:"dataset_seed"`
	Identities  []int     `json:"identities"`
	Seeds       int       `json:"seeds"`
	Prompts     []Prompt  `json:"prompts"`
	Settings    []Setting `json:"settings"`
	FineTune    *FineTune `json:"fine_tune,omitempty"`
	// Scorer and Embedder name the scoring networks' weights.
	Scorer   string `json:"scorer"`
	Embedder string `json:"embedder"`
	// InputsWithoutFace counts input faces the detector missed (their
	// face scores are all 0).
	InputsWithoutFace int         `json:"inputs_without_face"`
	FineTuned         []FineTuned `json:"fine_tuned,omitempty"`
	Results           []Result    `json:"results"`
	// Reference rows: real renders of each identity in each prompt's scene.
	Reference []GroupRows `json:"reference"`
	Seconds   float64     `json:"seconds"`

	Samples   []Sample      `json:"-"`
	Inputs    []image.Image `json:"-"`
	reference []Sample
}

// Result is one setting's tables.
type Result struct {
	Setting Setting     `json:"setting"`
	Table1  []GroupRows `json:"table1"`
	// Table2 holds, per group, the best-of-Seeds rows by overall score.
	Table2 []GroupRows `json:"table2"`
	// Diffs: Face0's advantage over each other conditioning, by group.
	Diffs []GroupDiffs `json:"diffs"`
	// SecondsPerImage is the median sampling wall time per image (whole
	// workflow runs of one identity, Seeds-image batches).
	SecondsPerImage float64 `json:"seconds_per_image"`
}

// GroupRows are the rows of one prompt group.
type GroupRows struct {
	Group string `json:"group"`
	Rows  []Row  `json:"rows"`
}

// GroupDiffs are the paired differences of one prompt group.
type GroupDiffs struct {
	Group string `json:"group"`
	Diffs []Diff `json:"diffs"`
}

// Run fine-tunes the baseline models, generates and scores every sample;
// see the package comment.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	net, err := evalnet.Load()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Inputs, 0o755); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	t0 := time.Now()
	rep := &Report{Model: o.Model, DatasetSeed: o.DatasetSeed, Seeds: o.Seeds, Settings: o.Settings,
		Scorer: net.ID(), Embedder: synthfaces.EmbedderID()}
	for _, p := range o.Prompts {
		rep.Prompts = append(rep.Prompts, Prompts[p])
	}
	var inputs []input
	var files []string
	for i := range o.Identities {
		id := synthfaces.HeldOutBase + o.FirstIdentity + i
		rep.Identities = append(rep.Identities, id)
		in := synthfaces.RenderSample(o.DatasetSeed, id, 0, synthfaces.RenderOptions{Size: 128})
		name := fmt.Sprintf("heldout-%d-%d.png", o.DatasetSeed, id)
		if err := writePNG(filepath.Join(o.Inputs, name), in.Pixels); err != nil {
			return nil, err
		}
		files = append(files, name)
		x := embedInput(net, id, in.Pixels)
		if x.noFound {
			rep.InputsWithoutFace++
		}
		inputs = append(inputs, x)
		rep.Inputs = append(rep.Inputs, in.Pixels)
	}
	sc := newScorer(net, inputs)

	// 1. The fine-tuning baseline, one model per identity.
	var cat *engine.Catalog
	ftModel := map[int]string{}
	if !o.NoFineTune {
		ft := o.FineTune
		rep.FineTune = &ft
		tu, err := newTuner(filepath.Join(o.App.Dirs.Models, o.Model), o.DatasetSeed, o.FineTune)
		if err != nil {
			return nil, err
		}
		defer tu.close()
		for i, id := range rep.Identities {
			// The settings' hash in the name: the face0 plugin keeps a
			// model it loaded by path, so a model fine-tuned again under
			// the same name would not be read again in this process.
			name := fmt.Sprintf("%s-ft-%d-%d-%s", o.Model, o.DatasetSeed, id, tu.hash())
			r, err := tu.run(ctx, o.DatasetSeed, id, filepath.Join(o.App.Dirs.Models, name))
			if err != nil {
				return nil, err
			}
			rep.FineTuned = append(rep.FineTuned, r)
			ftModel[i] = name
			o.Progress(fmt.Sprintf("fine-tuned %d/%d identities (%.0f s%s)", i+1, len(rep.Identities), r.Seconds, map[bool]string{true: ", reused"}[r.Reused]))
		}
	}
	// The nodes list their choices when they describe themselves (LoadImage
	// the input folder's images, the samplers the models folder's models)
	// and a name not listed is refused: ask them again now that the input
	// faces and the fine-tuned models are written.
	if cat, err = refreshed(ctx, o.App); err != nil {
		return nil, err
	}

	// 2. Sampling and scoring.
	for _, st := range o.Settings {
		res := Result{Setting: st}
		var perImage []float64
		for i, id := range rep.Identities {
			wf, want, err := buildWorkflow(o, st, filepath.Join("evaluate", files[i]), int64(i), ftModel[i])
			if err != nil {
				return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
			}
			plan, err := cat.Compile(wf, want)
			if err != nil {
				return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
			}
			t1 := time.Now()
			out, err := o.App.Engine.Run(ctx, plan, engine.RunOptions{PromptID: fmt.Sprintf("evaluate-%s-%d", st.Name, id), NoCache: true})
			if err != nil {
				return nil, fmt.Errorf("evaluate: identity %d: %w", id, err)
			}
			perImage = append(perImage, time.Since(t1).Seconds()/float64(len(want)*o.Seeds))
			for ci, cond := range Conditions {
				if cond == CondFineTune && ftModel[i] == "" {
					continue
				}
				for _, p := range o.Prompts {
					node := decodeID(ci, p)
					imgs, err := value.AsImages(out.Outputs[node].Values["IMAGE"])
					if err != nil || len(imgs) != o.Seeds {
						return nil, fmt.Errorf("evaluate: identity %d, %s: %d images, want %d (%v)", id, node, len(imgs), o.Seeds, err)
					}
					for k, img := range imgs {
						x := Sample{Setting: st.Name, Identity: id, Prompt: p, Condition: cond, Seed: o.FirstSeed + int64(k), Image: img}
						sc.score(&x, i, p, img)
						rep.Samples = append(rep.Samples, x)
					}
				}
			}
			o.Progress(fmt.Sprintf("%s setting: %d/%d identities", st.Name, i+1, len(rep.Identities)))
		}
		res.SecondsPerImage = median(perImage)
		rep.Results = append(rep.Results, res)
	}

	// 3. The ceiling: the identity drawn in each prompt's scene, once per
	// seed with the nuisance variation of an image index no dataset uses.
	for i, id := range rep.Identities {
		a := synthfaces.NewIdentity(o.DatasetSeed, id)
		for _, p := range o.Prompts {
			for k := range o.Seeds {
				_, v := synthfaces.NewScene(o.DatasetSeed, id, 1000+p*o.Seeds+k)
				img, _ := synthfaces.Render(a, Prompts[p].Scene, v, synthfaces.RenderOptions{Size: 32})
				x := Sample{Identity: id, Prompt: p, Condition: CondReference, Seed: int64(k), Image: img}
				sc.score(&x, i, p, img)
				rep.reference = append(rep.reference, x)
			}
		}
	}
	rep.tables()
	rep.Seconds = time.Since(t0).Seconds()
	return rep, nil
}

// buildWorkflow is one identity's graph for one setting: the input face
// embedded, one random embedding, each prompt encoded (with the
// identifier for the fine-tuned model), and a sampler and decoder per
// (conditioning, prompt), all with the same seeds.
func buildWorkflow(o Options, st Setting, input string, idx int64, ftModel string) (*workflow.Workflow, []string, error) {
	var nodes []map[string]any
	add := func(id, typ string, in map[string]any) {
		nodes = append(nodes, map[string]any{"id": id, "type": typ, "inputs": in})
	}
	link := func(node, out string) map[string]any { return map[string]any{"node": node, "output": out} }
	add("load", "LoadImage", map[string]any{"image": input})
	add("embed", "EmbedFace", map[string]any{"image": link("load", "IMAGE"), "model": synthfaces.IDSpace})
	// A different random face per identity, from the model's fitted mixture.
	add("random", "RandomEmbedding", map[string]any{"model": o.Model, "seed": 1000 + idx})
	var want []string
	for ci, cond := range Conditions {
		model, tp := o.Model, "text"
		if cond == CondFineTune {
			if ftModel == "" {
				continue
			}
			model, tp = ftModel, "fttext"
		}
		for _, p := range o.Prompts {
			tid := tp + strconv.Itoa(p)
			if ci == 0 || cond == CondFineTune {
				text := Prompts[p].Text
				if cond == CondFineTune {
					text = withToken(text, o.FineTune.Token)
				}
				add(tid, "EncodeText", map[string]any{"model": model, "text": text})
			}
			in := map[string]any{
				"model": model, "positive": link(tid, "CONDITIONING"),
				"seed": o.FirstSeed, "steps": st.Steps, "batch_size": o.Seeds, "scheduler": st.Scheduler,
				"w": st.W, "c": st.C, "a": st.A, "eta": st.Eta,
			}
			switch cond {
			case CondFace:
				in["face_embedding"] = link("embed", "embedding")
			case CondRandom:
				in["face_embedding"] = link("random", "embedding")
			}
			s := "sample" + strconv.Itoa(ci) + "_" + strconv.Itoa(p)
			add(s, "Face0Sampler", in)
			add(decodeID(ci, p), "Decode", map[string]any{"model": model, "latent": link(s, "LATENT")})
			want = append(want, decodeID(ci, p))
		}
	}
	// Through JSON, so the literals are what a workflow file would hold.
	data, err := json.Marshal(map[string]any{"version": workflow.Version, "name": "evaluate", "nodes": nodes})
	if err != nil {
		return nil, nil, err
	}
	wf, _, err := workflow.Parse(data)
	return wf, want, err
}

// refreshed is the App's node catalog described afresh by its plugins.
func refreshed(ctx context.Context, a *app.App) (*engine.Catalog, error) {
	cat, errs := a.Refresh(ctx)
	if len(errs) > 0 {
		return nil, fmt.Errorf("evaluate: refreshing the node catalog: %v", errors.Join(errs...))
	}
	return cat, nil
}

func decodeID(cond, prompt int) string { return fmt.Sprintf("decode%d_%d", cond, prompt) }

// tables reduces the samples into each setting's tables.
func (r *Report) tables() {
	in := func(s []Sample, setting, group, cond string) []Sample {
		var out []Sample
		for _, x := range s {
			if (setting == "" || x.Setting == setting) && x.Condition == cond && (group == GroupAll || Prompts[x.Prompt].Group == group) {
				out = append(out, x)
			}
		}
		return out
	}
	for i := range r.Results {
		res := &r.Results[i]
		for _, g := range Groups {
			var t1, t2 GroupRows
			t1.Group, t2.Group = g, g
			d := GroupDiffs{Group: g}
			face := in(r.Samples, res.Setting.Name, g, CondFace)
			for _, c := range Conditions {
				s := in(r.Samples, res.Setting.Name, g, c)
				t1.Rows = append(t1.Rows, summarize(c, s))
				t2.Rows = append(t2.Rows, summarize(c, bestOf(s, r.Seeds)))
				if c != CondFace && len(s) > 0 {
					d.Diffs = append(d.Diffs, pairedDiff(c, face, s))
				}
			}
			res.Table1 = append(res.Table1, t1)
			res.Table2 = append(res.Table2, t2)
			res.Diffs = append(res.Diffs, d)
		}
	}
	r.Reference = nil
	for _, g := range Groups {
		r.Reference = append(r.Reference, GroupRows{Group: g, Rows: []Row{summarize(CondReference, in(r.reference, "", g, CondReference))}})
	}
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

// AllSamples are the generated samples followed by the reference renders.
func (r *Report) AllSamples() []Sample {
	return append(append([]Sample(nil), r.Samples...), r.reference...)
}
