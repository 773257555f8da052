package value

import (
	"encoding/json"
	"image"
	"image/color"
	"slices"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
)

func TestImagesRoundTrip(t *testing.T) {
	for _, alpha := range []uint8{255, 100} {
		a := image.NewNRGBA(image.Rect(0, 0, 3, 2))
		b := image.NewNRGBA(image.Rect(0, 0, 3, 2))
		for i := range a.Pix {
			a.Pix[i], b.Pix[i] = uint8(i*7), uint8(255-i)
		}
		a.SetNRGBA(1, 1, color.NRGBA{1, 2, 3, alpha})
		b.SetNRGBA(0, 0, color.NRGBA{9, 9, 9, 255})
		for i := 3; i < len(b.Pix); i += 4 {
			b.Pix[i] = 255
			if alpha == 255 {
				a.Pix[i] = 255
			}
		}
		v, err := Images(a, b)
		if err != nil {
			t.Fatal(err)
		}
		wantC := int64(4)
		if alpha == 255 {
			wantC = 3
		}
		if sh := v.GetTensor().Shape; sh[0] != 2 || sh[3] != wantC {
			t.Fatalf("shape %v", sh)
		}
		got, err := AsImages(v)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []*image.NRGBA{a, b} {
			for p := range want.Pix {
				if got[i].Pix[p] != want.Pix[p] {
					t.Fatalf("alpha %d image %d byte %d: %d != %d", alpha, i, p, got[i].Pix[p], want.Pix[p])
				}
			}
		}
	}
	if _, err := Images(image.NewNRGBA(image.Rect(0, 0, 1, 1)), image.NewNRGBA(image.Rect(0, 0, 2, 1))); err == nil {
		t.Fatal("mixed sizes accepted")
	}
}

func TestTensorChecks(t *testing.T) {
	bad := []*pb.Tensor{
		{Dtype: pb.Tensor_FLOAT32, Shape: []int64{2}, Data: make([]byte, 4)},
		{Dtype: pb.Tensor_DTYPE_UNSPECIFIED, Shape: []int64{1}, Data: make([]byte, 1)},
		{Dtype: pb.Tensor_UINT8, Shape: []int64{-1}, Data: nil},
		{Dtype: pb.Tensor_UINT8, Shape: []int64{1 << 62, 1 << 62}, Data: nil},
	}
	for i, tt := range bad {
		if CheckTensor(tt) == nil {
			t.Errorf("tensor %d accepted", i)
		}
	}
	v := Float32Tensor("LATENT", []float32{1.5, -2}, 1, 2)
	d, sh, err := AsFloat32(v)
	if err != nil || d[1] != -2 || sh[1] != 2 {
		t.Fatal(d, sh, err)
	}
}

func TestFromJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{json.Number("3"), "an integer"},
		{json.Number("3.5"), "a number"},
		{"s", "a string"},
		{true, "a boolean"},
		{[]any{json.Number("1")}, "a list"},
		{map[string]any{"a": nil}, "a record"},
	}
	for _, tt := range tests {
		v, err := FromJSON(tt.in)
		if err != nil || Kind(v) != tt.want {
			t.Errorf("FromJSON(%v) = %s, %v", tt.in, Kind(v), err)
		}
	}
	if _, err := FromJSON(json.Number("1e999")); err == nil {
		t.Error("1e999 accepted")
	}
	if !IsNull(Null()) || IsNull(Int(0)) {
		t.Error("IsNull")
	}
}

// Views share memory with the tensor instead of converting it; misaligned
// data falls back to a copy with the same values.
func TestFloat32Views(t *testing.T) {
	data := []float32{1, 2, 3, 4}
	v := Float32View("LATENT", data, 2, 2)
	back, shape, err := AsFloat32View(v)
	if err != nil || len(back) != 4 || shape[1] != 2 {
		t.Fatal(back, shape, err)
	}
	back[2] = 9
	if data[2] != 9 {
		t.Skip("big-endian machine: views are copies")
	}
	want, _, _ := AsFloat32(Float32Tensor("LATENT", data, 2, 2))
	if got, _, _ := AsFloat32(v); !slices.Equal(got, want) {
		t.Fatalf("view bytes %v, want %v", got, want)
	}
	odd := make([]byte, 17)
	copy(odd[1:], v.GetTensor().Data)
	mis := &pb.Value{Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_FLOAT32, Shape: []int64{4}, Data: odd[1:]}}}
	got, _, err := AsFloat32View(mis)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("misaligned: %v %v", got, err)
	}
	if _, _, err := AsFloat32View(&pb.Value{Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_FLOAT32, Shape: []int64{5}, Data: odd[1:]}}}); err == nil {
		t.Fatal("a wrong length is accepted")
	}
}
