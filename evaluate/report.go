package evaluate

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"strings"

	xdraw "golang.org/x/image/draw"
)

// Markdown renders Tables 1 and 2 and the reference row.
func (r *Report) Markdown() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "Model `%s`; %d held-out synthfaces identities (seed %d) × %d prompts; %s (η %g), %d steps, w %g, c %g, a %g. Mean ± standard error.\n\n",
		r.Model, o.Identities, o.DatasetSeed, o.Prompts, o.Scheduler, o.Eta, o.Steps, o.W, o.C, o.A)
	table := func(title string, rows []Row, note string) {
		fmt.Fprintf(&b, "**%s** %s\n\n", title, note)
		b.WriteString("| conditioning | face alignment (cosine to the input face) | text alignment (caption attributes found) | text alignment by chance (another caption) | samples |\n")
		b.WriteString("|---|---|---|---|---|\n")
		for _, x := range rows {
			fmt.Fprintf(&b, "| %s | %.3f ± %.3f | %.1f%% ± %.1f | %.1f%% | %d |\n", x.Condition, x.Face, x.FaceSE, 100*x.Text, 100*x.TextSE, 100*x.Chance, x.N)
		}
		b.WriteString("\n")
	}
	table("Table 1", r.Table1, fmt.Sprintf("(%d seeds per prompt)", o.Seeds))
	table("Table 2", r.Table2, fmt.Sprintf("(per prompt, the best of %d seeds by face alignment)", o.BestOf))
	b.WriteString("**Text alignment by attribute** (Table 1 samples; in brackets: against another caption)\n\n| conditioning |")
	for _, n := range AttrNames {
		fmt.Fprintf(&b, " %s |", n)
	}
	b.WriteString("\n|---|---|---|---|\n")
	for _, x := range append(append([]Row(nil), r.Table1...), r.Reference) {
		fmt.Fprintf(&b, "| %s |", x.Condition)
		for k := range AttrNames {
			fmt.Fprintf(&b, " %.0f%% (%.0f%%) |", 100*x.Attr[k], 100*x.AttrChance[k])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	x := r.Reference
	fmt.Fprintf(&b, "Reference, real renders of the same identity in the prompts' scenes: face alignment %.3f ± %.3f, text alignment %.1f%% (chance %.1f%%), %d images.\n",
		x.Face, x.FaceSE, 100*x.Text, 100*x.Chance, x.N)
	return b.String()
}

// Grid draws rows identities: the input face, then for each condition
// the first sample of each prompt, each cell px pixels, with a gap
// between the condition groups.
func (r *Report) Grid(rows, px int) image.Image {
	rows = min(rows, len(r.Inputs))
	prompts := r.Options.Prompts
	const gap = 6
	cols := 1 + len(Conditions)*prompts
	w := cols*px + len(Conditions)*gap
	out := image.NewNRGBA(image.Rect(0, 0, w, rows*px))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	first := map[[3]int]image.Image{}
	for _, s := range r.Samples {
		k := [3]int{s.Identity, s.Prompt, condIndex(s.Condition)}
		if _, ok := first[k]; !ok && s.Seed == r.firstSeed() {
			first[k] = s.Image
		}
	}
	for i := range rows {
		id := identityOf(r, i)
		y := i * px
		cell(out, r.Inputs[i], 0, y, px)
		for c := range Conditions {
			for p := range prompts {
				x := px + gap + c*(prompts*px+gap) + p*px
				if img := first[[3]int{id, p, c}]; img != nil {
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

func (r *Report) firstSeed() int64 {
	if len(r.Samples) == 0 {
		return 0
	}
	s := r.Samples[0].Seed
	for _, x := range r.Samples {
		s = min(s, x.Seed)
	}
	return s
}

func identityOf(r *Report, i int) int {
	seen := -1
	last := -1
	for _, s := range r.Samples {
		if s.Identity != last {
			last = s.Identity
			seen++
			if seen == i {
				return s.Identity
			}
		}
	}
	return -1
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
