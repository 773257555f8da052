package evaluate

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"sort"
	"strings"

	xdraw "golang.org/x/image/draw"
)

func f3(s Stat) string { return fmt.Sprintf("%.3f ± %.3f [%.3f, %.3f]", s.Mean, s.SD, s.Lo, s.Hi) }

func pct(s Stat) string {
	return fmt.Sprintf("%.1f%% ± %.1f [%.1f, %.1f]", 100*s.Mean, 100*s.SD, 100*s.Lo, 100*s.Hi)
}

func ci(s Stat) string { return fmt.Sprintf("%+.3f [%+.3f, %+.3f]", s.Mean, s.Lo, s.Hi) }

// Markdown renders the report: per setting Table 1, Table 2 and Face0's
// paired differences; the chance levels and attributes of the main
// setting; the fine-tuning cost; the prompts.
func (r *Report) Markdown() string {
	var b strings.Builder
	ids := fmt.Sprintf("%d", r.Identities[0])
	if n := len(r.Identities); n > 1 {
		ids = fmt.Sprintf("%d-%d", r.Identities[0], r.Identities[n-1])
	}
	groups := map[string]int{}
	for _, p := range r.Prompts {
		groups[p.Group]++
	}
	fmt.Fprintf(&b, "Model `%s`; %d held-out synthfaces identities (seed %d, ids %s; seen by no training of the model, its face embedder or the scoring networks) × %d fixed prompts (%d photo-like, %d artistic; listed below) × %d noise seeds (%d-%d), the same for every conditioning.\n\n",
		r.Model, len(r.Identities), r.DatasetSeed, ids, len(r.Prompts), groups[GroupPhoto], groups[GroupArtistic], r.Seeds, 0, r.Seeds-1)
	b.WriteString("Scores (FACE0-PAPER.md §4.3, with independent networks, `synthfaces/evalnet`): **text** is the cosine between an image-text model's embeddings of the sample and of the prompt; **face** is the cosine between the same model's image embeddings of the detected face crop of the sample and of the input face (the Face0 crop: the paper's margins, squared), 0 when no face is detected; **overall** = face + text. Beside them: **face (id)**, the cosine of the `synthfaces-id-64` embeddings, the space the model is conditioned in (not independent: today's earlier metric); **attributes**, the share of the prompt's background colour, hat (any/none) and glasses (any/none) that synthfaces' probes read back; **found**, the share of samples with a detected face.\n\n")
	b.WriteString("Cells: mean ± standard deviation over samples [95% confidence interval of the mean, grouped by identity: Student's t over the per-identity means].\n\n")
	if r.InputsWithoutFace > 0 {
		fmt.Fprintf(&b, "**Warning**: the detector found no face in %d input faces; their face scores are 0.\n\n", r.InputsWithoutFace)
	}
	for i, res := range r.Results {
		title := "Main setting"
		if i > 0 {
			title = "Second setting"
		}
		fmt.Fprintf(&b, "### %s: %s\n\n", title, res.Setting.About)
		r.table1(&b, res)
		r.table2(&b, res)
		r.diffs(&b, res)
		if i == 0 {
			r.chance(&b, res)
			r.attributes(&b, res)
		}
		fmt.Fprintf(&b, "Sampling: %.3f s per image (median over identities of whole workflow runs, %d-image batches, this machine).\n\n", res.SecondsPerImage, r.Seeds)
	}
	r.costs(&b)
	b.WriteString("Prompts:\n\n")
	for i, p := range r.Prompts {
		fmt.Fprintf(&b, "%d. (%s) %s\n", i+1, p.Group, p.Text)
	}
	return b.String()
}

func (r *Report) table1(b *strings.Builder, res Result) {
	fmt.Fprintf(b, "**Table 1** (all %d seeds)\n\n", r.Seeds)
	b.WriteString("| prompts | conditioning | text | face | overall | face (id) | attributes | found |\n|---|---|---|---|---|---|---|---|\n")
	for gi, g := range res.Table1 {
		rows := append(append([]Row(nil), g.Rows...), r.Reference[gi].Rows...)
		for _, x := range rows {
			if x.N == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %.0f%% |\n", g.Group, x.Condition, f3(x.Text), f3(x.Face), f3(x.Overall), f3(x.FaceID), pct(x.Probe), 100*x.Found)
		}
	}
	b.WriteString("\n")
}

func (r *Report) table2(b *strings.Builder, res Result) {
	fmt.Fprintf(b, "**Table 2** (overall score: per identity and prompt the best of %d seeds by overall score, against the average of Table 1; mean ± SD)\n\n|  |", r.Seeds)
	var conds []string
	for _, x := range res.Table1[0].Rows {
		if x.N > 0 {
			conds = append(conds, x.Condition)
			fmt.Fprintf(b, " %s |", x.Condition)
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(conds)) + "\n")
	for gi := range res.Table1 {
		for _, line := range []struct {
			name string
			rows []Row
		}{{fmt.Sprintf("best of %d", r.Seeds), res.Table2[gi].Rows}, {"average", res.Table1[gi].Rows}} {
			fmt.Fprintf(b, "| %s (%s) |", line.name, res.Table1[gi].Group)
			for _, x := range line.rows {
				if x.N > 0 {
					fmt.Fprintf(b, " %.3f ± %.3f |", x.Overall.Mean, x.Overall.SD)
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

func (r *Report) diffs(b *strings.Builder, res Result) {
	b.WriteString("**Face0 with the input face against the others** (difference of the per-identity means, paired by identity [95% CI])\n\n| prompts | against | text | face | overall |\n|---|---|---|---|---|\n")
	for _, g := range res.Diffs {
		for _, d := range g.Diffs {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", g.Group, d.Versus, ci(d.Text), ci(d.Face), ci(d.Overall))
		}
	}
	b.WriteString("\n")
}

func (r *Report) chance(b *strings.Builder, res Result) {
	b.WriteString("**Chance levels** (all prompts; each sample scored against each of the other prompts, and its face against the input face of each other identity; averaged)\n\n| conditioning | text | text, other prompts | face | face, other identities | face (id) | face (id), other identities | attributes | attributes, other prompts |\n|---|---|---|---|---|---|---|---|---|\n")
	all := res.Table1[len(res.Table1)-1].Rows
	all = append(append([]Row(nil), all...), r.Reference[len(r.Reference)-1].Rows...)
	for _, x := range all {
		if x.N == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f%% | %.1f%% |\n", x.Condition, x.Text.Mean, x.TextChance, x.Face.Mean, x.FaceChance, x.FaceID.Mean, x.FaceIDChance, 100*x.Probe.Mean, 100*x.ProbeChance)
	}
	b.WriteString("\n")
}

func (r *Report) attributes(b *strings.Builder, res Result) {
	b.WriteString("**Attributes** (all prompts, Table 1 samples; in brackets: against the other prompts)\n\n| conditioning |")
	for _, n := range AttrNames {
		fmt.Fprintf(b, " %s |", n)
	}
	b.WriteString("\n|---|---|---|---|\n")
	all := append(append([]Row(nil), res.Table1[len(res.Table1)-1].Rows...), r.Reference[len(r.Reference)-1].Rows...)
	for _, x := range all {
		if x.N == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s |", x.Condition)
		for k := range AttrNames {
			fmt.Fprintf(b, " %.0f%% (%.0f%%) |", 100*x.Attr[k], 100*x.AttrChance[k])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func (r *Report) costs(b *strings.Builder) {
	if len(r.FineTuned) == 0 || r.FineTune == nil {
		b.WriteString("The fine-tuning baseline was left out of this run.\n\n")
		return
	}
	ft := r.FineTune
	var secs []float64
	var first, last float64
	reused := 0
	for _, x := range r.FineTuned {
		secs = append(secs, x.Seconds)
		first += x.FirstLoss / float64(len(r.FineTuned))
		last += x.LastLoss / float64(len(r.FineTuned))
		if x.Reused {
			reused++
		}
	}
	sort.Float64s(secs)
	fmt.Fprintf(b, "**Per-identity cost.** Face0: none (the input face goes through EmbedFace at sampling time). Fine-tuning baseline: %d steps × batch %d (lr %g, about half of each batch prior-preservation renders of %d training identities) on %d renders of the identity captioned with \"%s person\", per identity: median %.0f s (%.0f-%.0f s) of fine-tuning on this machine; training loss %.3f → %.3f (mean of the first and last 10 steps).",
		ft.Steps, ft.Batch, ft.LR, ft.Prior, ft.Images, ft.Token, secs[len(secs)/2], secs[0], secs[len(secs)-1], first, last)
	if reused > 0 {
		fmt.Fprintf(b, " (%d of the %d models were reused from an earlier run with the same settings; their times are from that run.)", reused, len(r.FineTuned))
	}
	b.WriteString("\n\n")
}

// GridPrompts are the prompts the grid shows: two photo-like, two artistic.
var GridPrompts = []int{0, 2, 5, 7}

// Grid draws rows identities of the main setting: the input face, then
// for each conditioning the first seed of each of GridPrompts, each cell
// px pixels, with a gap between the conditioning groups.
func (r *Report) Grid(rows, px int) image.Image {
	rows = min(rows, len(r.Inputs))
	setting := r.Results[0].Setting.Name
	var conds []int
	for ci, c := range Conditions {
		for _, s := range r.Samples {
			if s.Condition == c {
				conds = append(conds, ci)
				break
			}
		}
	}
	const gap = 6
	cols := 1 + len(conds)*len(GridPrompts)
	out := image.NewNRGBA(image.Rect(0, 0, cols*px+len(conds)*gap, rows*px))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	type key struct{ id, p, c int }
	first := map[key]image.Image{}
	for _, s := range r.Samples {
		if s.Setting != setting || s.Seed != 0 {
			continue
		}
		first[key{s.Identity, s.Prompt, condIndex(s.Condition)}] = s.Image
	}
	for i := range rows {
		y := i * px
		cell(out, r.Inputs[i], 0, y, px)
		for gi, c := range conds {
			for k, p := range GridPrompts {
				x := px + gap + gi*(len(GridPrompts)*px+gap) + k*px
				if img := first[key{r.Identities[i], p, c}]; img != nil {
					cell(out, img, x, y, px)
				}
			}
		}
	}
	return out
}

// Strip lays images out in one row, each px pixels.
func Strip(imgs []image.Image, px int) image.Image {
	out := image.NewNRGBA(image.Rect(0, 0, len(imgs)*px, px))
	for i, img := range imgs {
		cell(out, img, i*px, 0, px)
	}
	return out
}

func condIndex(c string) int {
	for i, x := range Conditions {
		if x == c {
			return i
		}
	}
	return -1
}

// cell draws img scaled to px×px at (x, y), nearest-neighbour when
// enlarging (so the model's pixels stay visible).
func cell(dst draw.Image, img image.Image, x, y, px int) {
	r := image.Rect(x, y, x+px, y+px)
	if img.Bounds().Dx() < px {
		xdraw.NearestNeighbor.Scale(dst, r, img, img.Bounds(), xdraw.Src, nil)
		return
	}
	xdraw.CatmullRom.Scale(dst, r, img, img.Bounds(), xdraw.Src, nil)
}
