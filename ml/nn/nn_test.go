package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func maxDiff(t *testing.T, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	m := 0.0
	for i := range got {
		m = math.Max(m, math.Abs(float64(got[i])-float64(want[i])))
	}
	return m
}

// naiveConv is the textbook definition, accumulated in float64.
func naiveConv(x []float32, n, c, h, w int, wt []float32, oc, kh, kw int, bias []float32, sh, sw, ph, pw int) ([]float32, int, int) {
	oh := (h+2*ph-kh)/sh + 1
	ow := (w+2*pw-kw)/sw + 1
	out := make([]float32, n*oc*oh*ow)
	for b := range n {
		for o := range oc {
			for y := range oh {
				for xx := range ow {
					s := 0.0
					if bias != nil {
						s = float64(bias[o])
					}
					for ic := range c {
						for ky := range kh {
							for kx := range kw {
								iy, ix := y*sh-ph+ky, xx*sw-pw+kx
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								s += float64(x[((b*c+ic)*h+iy)*w+ix]) * float64(wt[((o*c+ic)*kh+ky)*kw+kx])
							}
						}
					}
					out[((b*oc+o)*oh+y)*ow+xx] = float32(s)
				}
			}
		}
	}
	return out, oh, ow
}

func TestConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name              string
		n, c, h, w, oc, k int
		sh, sw, ph, pw    int
		bias, prelu       bool
		wantOH, wantOW    int
	}{
		{"pnet conv1", 1, 3, 31, 45, 10, 3, 1, 1, 0, 0, true, true, 29, 43},
		{"1x1 heads", 2, 32, 5, 7, 6, 1, 1, 1, 0, 0, true, false, 5, 7},
		{"2x2 batch", 3, 48, 4, 4, 64, 2, 1, 1, 0, 0, true, true, 3, 3},
		{"odd sizes", 2, 5, 17, 300, 7, 3, 1, 1, 0, 0, false, false, 15, 298},
		{"stride 2 pad 1", 1, 4, 16, 15, 9, 3, 2, 2, 1, 1, true, false, 8, 8},
		{"stride 2x1 pad 2x0", 1, 3, 9, 9, 5, 5, 2, 1, 2, 0, true, true, 5, 5},
		{"single output", 1, 2, 3, 3, 1, 3, 1, 1, 0, 0, true, false, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := randSlice(r, tc.n*tc.c*tc.h*tc.w)
			wt := randSlice(r, tc.oc*tc.c*tc.k*tc.k)
			var bias, slopes []float32
			if tc.bias {
				bias = randSlice(r, tc.oc)
			}
			opts := []Option{WithStride(tc.sh, tc.sw), WithPadding(tc.ph, tc.pw)}
			if tc.prelu {
				slopes = randSlice(r, tc.oc)
				opts = append(opts, WithPReLU(slopes))
			}
			conv, err := NewConv2D(wt, []int{tc.oc, tc.c, tc.k, tc.k}, bias, opts...)
			if err != nil {
				t.Fatal(err)
			}
			in, _ := FromData(x, tc.n, tc.c, tc.h, tc.w)
			got := conv.Forward(in)
			want, oh, ow := naiveConv(x, tc.n, tc.c, tc.h, tc.w, wt, tc.oc, tc.k, tc.k, bias, tc.sh, tc.sw, tc.ph, tc.pw)
			if oh != tc.wantOH || ow != tc.wantOW || got.Shape[2] != oh || got.Shape[3] != ow {
				t.Fatalf("output %v, want %dx%d", got.Shape, tc.wantOH, tc.wantOW)
			}
			if slopes != nil {
				ref, _ := FromData(want, tc.n, tc.oc, oh, ow)
				PReLU(ref, slopes)
			}
			if d := maxDiff(t, got.Data, want); d > 1e-4 {
				t.Errorf("max deviation from naive conv %g", d)
			}
		})
	}
}

func TestConstructorErrors(t *testing.T) {
	w := make([]float32, 2*3*3*3)
	tests := []struct {
		name string
		err  error
	}{
		{"shape rank", func() error { _, err := NewConv2D(w, []int{2, 3, 9}, nil); return err }()},
		{"weight count", func() error { _, err := NewConv2D(w[1:], []int{2, 3, 3, 3}, nil); return err }()},
		{"bias count", func() error { _, err := NewConv2D(w, []int{2, 3, 3, 3}, make([]float32, 3)); return err }()},
		{"prelu count", func() error {
			_, err := NewConv2D(w, []int{2, 3, 3, 3}, nil, WithPReLU(make([]float32, 1)))
			return err
		}()},
		{"stride", func() error { _, err := NewConv2D(w, []int{2, 3, 3, 3}, nil, WithStride(0, 1)); return err }()},
		{"padding", func() error { _, err := NewConv2D(w, []int{2, 3, 3, 3}, nil, WithPadding(-1, 0)); return err }()},
		{"dense count", func() error { _, err := NewDense(w, 5, 5, nil); return err }()},
		{"dense stride", func() error { _, err := NewDense(w, 2, 27, nil, WithStride(2, 2)); return err }()},
		{"dense bias", func() error { _, err := NewDense(w, 2, 27, make([]float32, 3)); return err }()},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestConvPanicsOnWrongChannels(t *testing.T) {
	conv, err := NewConv2D(make([]float32, 2*3*3*3), []int{2, 3, 3, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic for a 4-channel input to a 3-channel conv")
		}
	}()
	conv.Forward(New(1, 4, 5, 5))
}

func TestDense(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ n, in, out int }{{1, 576, 128}, {70, 1152, 256}, {33, 128, 2}, {5, 7, 3}} {
		x := randSlice(r, tc.n*tc.in)
		w := randSlice(r, tc.out*tc.in)
		b := randSlice(r, tc.out)
		a := randSlice(r, tc.out)
		d, err := NewDense(w, tc.out, tc.in, b, WithPReLU(a))
		if err != nil {
			t.Fatal(err)
		}
		in, _ := FromData(x, tc.n, tc.in)
		got := d.Forward(in)
		want := make([]float32, tc.n*tc.out)
		for i := range tc.n {
			for o := range tc.out {
				s := float64(b[o])
				for k := range tc.in {
					s += float64(x[i*tc.in+k]) * float64(w[o*tc.in+k])
				}
				if s < 0 {
					s *= float64(a[o])
				}
				want[i*tc.out+o] = float32(s)
			}
		}
		if dd := maxDiff(t, got.Data, want); dd > 1e-3 {
			t.Errorf("%+v: max deviation %g", tc, dd)
		}
	}
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m, k, n := 13, 37, 129
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	got := MatMul(a, b, m, k, n)
	want := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := 0.0
			for kk := range k {
				s += float64(a[i*k+kk]) * float64(b[kk*n+j])
			}
			want[i*n+j] = float32(s)
		}
	}
	if d := maxDiff(t, got, want); d > 1e-4 {
		t.Errorf("max deviation %g", d)
	}
}

func TestPoolOutputSize(t *testing.T) {
	tests := []struct {
		n, k, s int
		ceil    bool
		want    int
	}{
		{22, 3, 2, true, 11}, {9, 3, 2, true, 4}, {10, 2, 2, true, 5}, {11, 2, 2, true, 6},
		{11, 2, 2, false, 5}, {46, 3, 2, true, 23}, {21, 3, 2, true, 10}, {8, 2, 2, true, 4},
		{5, 2, 3, true, 2}, {4, 2, 3, true, 2}, {3, 1, 3, true, 1}, {1, 2, 2, true, 0},
	}
	for _, tc := range tests {
		if got := PoolOutputSize(tc.n, tc.k, tc.s, tc.ceil); got != tc.want {
			t.Errorf("PoolOutputSize(%d, %d, %d, %v) = %d, want %d", tc.n, tc.k, tc.s, tc.ceil, got, tc.want)
		}
	}
}

func TestMaxPool2D(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct{ h, w, k, s int }{{22, 22, 3, 2}, {11, 13, 2, 2}, {9, 9, 3, 2}, {7, 5, 3, 3}} {
		x := randSlice(r, 2*3*tc.h*tc.w)
		in, _ := FromData(x, 2, 3, tc.h, tc.w)
		got := MaxPool2D(in, tc.k, tc.s, true)
		oh, ow := PoolOutputSize(tc.h, tc.k, tc.s, true), PoolOutputSize(tc.w, tc.k, tc.s, true)
		for p := range 6 {
			for y := range oh {
				for xx := range ow {
					m := float32(math.Inf(-1))
					for dy := range tc.k {
						for dx := range tc.k {
							iy, ix := y*tc.s+dy, xx*tc.s+dx
							if iy < tc.h && ix < tc.w {
								m = max(m, x[(p*tc.h+iy)*tc.w+ix])
							}
						}
					}
					if g := got.Data[(p*oh+y)*ow+xx]; g != m {
						t.Fatalf("%+v: plane %d (%d,%d) = %g, want %g", tc, p, y, xx, g, m)
					}
				}
			}
		}
	}
}

func TestSoftmax(t *testing.T) {
	x, _ := FromData([]float32{1, 2, 3, 0, 1000, -1000}, 1, 2, 3)
	got := Softmax(x)
	// Channel 0 is {1, 2, 3}, channel 1 is {0, 1000, -1000}; the extremes
	// check that the max is subtracted before exponentiating.
	want := []float32{float32(1 / (1 + math.Exp(-1))), 0, 1, float32(1 / (1 + math.Exp(1))), 1, 0}
	if d := maxDiff(t, got.Data, want); d > 1e-7 {
		t.Errorf("softmax = %v, want %v", got.Data, want)
	}
}

func TestPReLU(t *testing.T) {
	x, _ := FromData([]float32{-1, 2, -3, 4, -5, 6, -7, 8}, 2, 2, 2)
	PReLU(x, []float32{0.5, 0.25})
	want := []float32{-0.5, 2, -0.75, 4, -2.5, 6, -1.75, 8}
	if d := maxDiff(t, x.Data, want); d != 0 {
		t.Errorf("PReLU = %v, want %v", x.Data, want)
	}
}

func TestAreaResize(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	tests := []struct{ h, w, oh, ow int }{
		{8, 6, 4, 3},            // exact 2x blocks
		{1280, 1920, 769, 1153}, // the MTCNN first pyramid level
		{10, 7, 24, 24},         // enlarging: overlapping windows
		{188, 248, 24, 24},      // a face crop
		{5, 5, 5, 5},            // identity
	}
	for _, tc := range tests {
		x := make([]float32, 2*tc.h*tc.w)
		for i := range x {
			x[i] = float32(r.IntN(256))
		}
		in, _ := FromData(x, 1, 2, tc.h, tc.w)
		got := AreaResize(in, tc.oh, tc.ow)
		want := make([]float32, 2*tc.oh*tc.ow)
		for p := range 2 {
			for i := range tc.oh {
				y0 := i * tc.h / tc.oh
				y1 := ((i+1)*tc.h + tc.oh - 1) / tc.oh
				for j := range tc.ow {
					x0 := j * tc.w / tc.ow
					x1 := ((j+1)*tc.w + tc.ow - 1) / tc.ow
					s := 0.0
					for y := y0; y < y1; y++ {
						for xx := x0; xx < x1; xx++ {
							s += float64(x[(p*tc.h+y)*tc.w+xx])
						}
					}
					want[(p*tc.oh+i)*tc.ow+j] = float32(s / float64((y1-y0)*(x1-x0)))
				}
			}
		}
		// Integer sums are exact, so only the two roundings of sum/kh/kw
		// separate ATen's order from the exact mean: at most 1 ulp.
		for i := range got.Data {
			g, w := got.Data[i], want[i]
			if g != w && math.Abs(float64(g-w)) > float64(math.Nextafter32(w, float32(math.Inf(1)))-w)*1.01 {
				t.Fatalf("%+v: element %d = %v, want %v", tc, i, g, w)
			}
		}
	}
}

func BenchmarkConv2D(b *testing.B) {
	// P-Net's conv3 on the first pyramid level of a 1920x1280 photo scaled to
	// a quarter of the area: 16 -> 32 channels, 3x3, the hottest layer.
	r := rand.New(rand.NewPCG(11, 12))
	const c, oc, h, w = 16, 32, 192, 288
	conv, err := NewConv2D(randSlice(r, oc*c*9), []int{oc, c, 3, 3}, randSlice(r, oc), WithPReLU(randSlice(r, oc)))
	if err != nil {
		b.Fatal(err)
	}
	x, _ := FromData(randSlice(r, c*h*w), 1, c, h, w)
	b.ResetTimer()
	for b.Loop() {
		conv.Forward(x)
	}
	flops := 2.0 * oc * c * 9 * (h - 2) * (w - 2)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(13, 14))
	const m, k, n = 64, 576, 4096
	a, bb := randSlice(r, m*k), randSlice(r, k*n)
	for b.Loop() {
		MatMul(a, bb, m, k, n)
	}
	b.ReportMetric(2.0*m*k*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
