package evaluate

import (
	"math"
	"sort"
)

// Stat summarises one score over samples: the mean, the standard
// deviation over samples (what the paper's ± reports), and a 95%
// confidence interval for the mean grouped by identity: the samples of one
// identity share its input face and fine-tuned model, so they are not
// independent; the interval is Student's t over the per-identity means
// (N identities, N−1 degrees of freedom).
type Stat struct {
	Mean float64 `json:"mean"`
	SD   float64 `json:"sd"`
	Lo   float64 `json:"ci_lo"`
	Hi   float64 `json:"ci_hi"`
}

// stat summarises values v whose identities are ids (same length).
func stat(v []float64, ids []int) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	m, sd := meanSD(v)
	lo, hi := groupedCI(v, ids)
	return Stat{Mean: m, SD: sd, Lo: lo, Hi: hi}
}

func meanSD(v []float64) (mean, sd float64) {
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
	return mean, math.Sqrt(ss / float64(len(v)-1))
}

// groupedCI is the 95% t interval of the mean of the per-group means.
func groupedCI(v []float64, ids []int) (lo, hi float64) {
	sum := map[int]float64{}
	n := map[int]float64{}
	for i, x := range v {
		sum[ids[i]] += x
		n[ids[i]]++
	}
	keys := make([]int, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	means := make([]float64, len(keys))
	for i, k := range keys {
		means[i] = sum[k] / n[k]
	}
	m, sd := meanSD(means)
	if len(means) < 2 {
		return m, m
	}
	h := tQuantile975(len(means)-1) * sd / math.Sqrt(float64(len(means)))
	return m - h, m + h
}

// tQuantile975 is the 97.5% quantile of Student's t with df degrees of
// freedom (exact table to 30, then the Cornish-Fisher expansion, which is
// within 1e-4 there).
func tQuantile975(df int) float64 {
	table := [...]float64{0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	if df >= 1 && df < len(table) {
		return table[df]
	}
	z, n := 1.959964, float64(df)
	return z + (z*z*z+z)/(4*n) + (5*math.Pow(z, 5)+16*z*z*z+3*z)/(96*n*n)
}

// Row is one line of Table 1: a conditioning's scores over a prompt group.
type Row struct {
	Condition string `json:"condition"`
	N         int    `json:"n"`
	Text      Stat   `json:"text"`
	Face      Stat   `json:"face"`
	Overall   Stat   `json:"overall"`
	FaceID    Stat   `json:"face_id"`
	Probe     Stat   `json:"probe"`
	// Found is the share of samples in which a face was detected.
	Found float64    `json:"found"`
	Attr  [3]float64 `json:"attr"`
	// Chance levels of the same samples (see Sample).
	TextChance   float64    `json:"text_chance"`
	FaceChance   float64    `json:"face_chance"`
	FaceIDChance float64    `json:"face_id_chance"`
	ProbeChance  float64    `json:"probe_chance"`
	AttrChance   [3]float64 `json:"attr_chance"`
}

func summarize(cond string, s []Sample) Row {
	r := Row{Condition: cond, N: len(s)}
	if len(s) == 0 {
		return r
	}
	ids := make([]int, len(s))
	col := func(f func(Sample) float64) []float64 {
		out := make([]float64, len(s))
		for i, x := range s {
			out[i] = f(x)
		}
		return out
	}
	for i, x := range s {
		ids[i] = x.Identity
	}
	r.Text = stat(col(func(x Sample) float64 { return x.Text }), ids)
	r.Face = stat(col(func(x Sample) float64 { return x.Face }), ids)
	r.Overall = stat(col(Sample.Overall), ids)
	r.FaceID = stat(col(func(x Sample) float64 { return x.FaceID }), ids)
	r.Probe = stat(col(func(x Sample) float64 { return x.Probe }), ids)
	n := float64(len(s))
	for _, x := range s {
		if x.Found {
			r.Found += 1 / n
		}
		r.TextChance += x.TextChance / n
		r.FaceChance += x.FaceChance / n
		r.FaceIDChance += x.FaceIDChance / n
		r.ProbeChance += x.ProbeChance / n
		for k := range 3 {
			r.Attr[k] += x.Attr[k] / n
			r.AttrChance[k] += x.AttrChance[k] / n
		}
	}
	return r
}

// Diff is Face0's advantage over another conditioning, paired by
// identity: the mean difference of the per-identity means and its 95%
// t interval.
type Diff struct {
	Versus  string `json:"versus"`
	Text    Stat   `json:"text"`
	Face    Stat   `json:"face"`
	Overall Stat   `json:"overall"`
}

// pairedDiff compares the samples a and b (same identities) per identity.
func pairedDiff(versus string, a, b []Sample) Diff {
	d := Diff{Versus: versus}
	means := func(s []Sample, f func(Sample) float64) map[int]float64 {
		sum, n := map[int]float64{}, map[int]float64{}
		for _, x := range s {
			sum[x.Identity] += f(x)
			n[x.Identity]++
		}
		for k := range sum {
			sum[k] /= n[k]
		}
		return sum
	}
	one := func(f func(Sample) float64) Stat {
		ma, mb := means(a, f), means(b, f)
		var v []float64
		var ids []int
		keys := make([]int, 0, len(ma))
		for k := range ma {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		for _, k := range keys {
			x := ma[k]
			if y, ok := mb[k]; ok {
				v = append(v, x-y)
				ids = append(ids, k)
			}
		}
		return stat(v, ids)
	}
	d.Text = one(func(x Sample) float64 { return x.Text })
	d.Face = one(func(x Sample) float64 { return x.Face })
	d.Overall = one(Sample.Overall)
	return d
}

// bestOf keeps, per (identity, prompt), the sample with the highest
// overall score among the first n seeds (the paper's Table 2 picks the
// best of 8 seeds by the overall score).
func bestOf(s []Sample, n int) []Sample {
	type key struct{ id, p int }
	best := map[key]Sample{}
	var order []key
	seen := map[key]int{}
	for _, x := range s {
		k := key{x.Identity, x.Prompt}
		if seen[k] >= n {
			continue
		}
		seen[k]++
		b, ok := best[k]
		if !ok {
			order = append(order, k)
		}
		if !ok || x.Overall() > b.Overall() {
			best[k] = x
		}
	}
	out := make([]Sample, len(order))
	for i, k := range order {
		out[i] = best[k]
	}
	return out
}
