package pipeline

import (
	"image"
	"image/color"
	"math"
)

// LossPlot draws a loss curve: each step's loss in light grey, an
// exponential moving average (0.9) in blue, on a white w×h canvas with a
// light grid (a line per 10% of the y range and of the steps). The y axis
// runs from 0 to the largest smoothed loss (raw spikes above it are cut).
// It has no text: the node's log lines carry the numbers.
func LossPlot(losses []float64, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	grid := color.NRGBA{230, 230, 230, 255}
	for k := 1; k < 10; k++ {
		y := h - 1 - k*(h-1)/10
		x := k * (w - 1) / 10
		for i := range w {
			img.SetNRGBA(i, y, grid)
		}
		for j := range h {
			img.SetNRGBA(x, j, grid)
		}
	}
	if len(losses) == 0 {
		return img
	}
	smooth := make([]float64, len(losses))
	top := 0.0
	for i, l := range losses {
		if i == 0 || math.IsNaN(smooth[i-1]) {
			smooth[i] = l
		} else {
			smooth[i] = 0.9*smooth[i-1] + 0.1*l
		}
		if !math.IsNaN(smooth[i]) && !math.IsInf(smooth[i], 0) {
			top = math.Max(top, smooth[i])
		}
	}
	if top <= 0 {
		top = 1
	}
	top *= 1.05
	px := func(i int) int {
		if len(losses) == 1 {
			return 0
		}
		return i * (w - 1) / (len(losses) - 1)
	}
	py := func(v float64) int {
		y := int(math.Round(float64(h-1) * (1 - v/top)))
		return min(max(y, 0), h-1)
	}
	line(img, losses, px, py, color.NRGBA{180, 180, 180, 255})
	line(img, smooth, px, py, color.NRGBA{30, 90, 200, 255})
	return img
}

func line(img *image.NRGBA, v []float64, px func(int) int, py func(float64) int, c color.NRGBA) {
	for i := range v {
		if math.IsNaN(v[i]) {
			continue
		}
		x1, y1 := px(i), py(v[i])
		x0, y0 := x1, y1
		if i > 0 && !math.IsNaN(v[i-1]) {
			x0, y0 = px(i-1), py(v[i-1])
		}
		n := max(abs(x1-x0), abs(y1-y0), 1)
		for k := 0; k <= n; k++ {
			x := x0 + (x1-x0)*k/n
			y := y0 + (y1-y0)*k/n
			img.SetNRGBA(x, y, c)
			if y+1 < img.Rect.Dy() {
				img.SetNRGBA(x, y+1, c)
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
