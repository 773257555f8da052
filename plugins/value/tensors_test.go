package value

import (
	"errors"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
)

// RewriteTensors replaces the tensors that f changes, in lists and records,
// copies only the path down to them, and never modifies its input.
func TestRewriteTensors(t *testing.T) {
	a := Float32Tensor("LATENT", []float32{1}, 1)
	b := Float32Tensor("LATENT", []float32{2}, 1)
	untouched := &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{Int(7)}}}}
	v := &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Fields: map[string]*pb.Value{
		"list":  {Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{Int(1), a}}}},
		"plain": untouched,
		"b":     b,
	}}}}
	swap := &pb.Tensor{Shape: []int64{1}, Dtype: pb.Tensor_FLOAT32, Data: []byte{0, 0, 128, 64}}
	got, err := RewriteTensors(v, func(x *pb.Tensor) (*pb.Tensor, error) {
		if x == a.GetTensor() {
			return swap, nil
		}
		return x, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fields := got.GetRecord().Fields
	if got == v || fields["list"].GetList().Items[1].GetTensor() != swap {
		t.Fatal("the changed tensor was not replaced in a new value")
	}
	if fields["plain"] != untouched || fields["b"] != b || fields["list"].GetList().Items[0] != v.GetRecord().Fields["list"].GetList().Items[0] {
		t.Error("values without a changed tensor were copied instead of shared")
	}
	if v.GetRecord().Fields["list"].GetList().Items[1] != a {
		t.Error("the input was modified")
	}

	var seen []*pb.Tensor
	EachTensor(v, func(x *pb.Tensor) { seen = append(seen, x) })
	if len(seen) != 2 {
		t.Errorf("EachTensor saw %d tensors, want 2", len(seen))
	}

	same, err := RewriteTensorsIn(map[string]*pb.Value{"x": untouched}, func(x *pb.Tensor) (*pb.Tensor, error) { return x, nil })
	if err != nil || same["x"] != untouched {
		t.Errorf("nothing to change: %v, %v", same, err)
	}
	boom := errors.New("boom")
	if _, err := RewriteTensorsIn(map[string]*pb.Value{"v": v}, func(*pb.Tensor) (*pb.Tensor, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("f's error = %v, want it returned", err)
	}
}
