package shm

import (
	"bytes"
	"os"
	"strings"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
)

func tensor(n int, b byte) *pb.Value {
	return &pb.Value{Type: "LATENT", Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_UINT8, Shape: []int64{int64(n)}, Data: bytes.Repeat([]byte{b}, n)}}}
}

func TestRoundTripLeavesInputUntouched(t *testing.T) {
	big, small := tensor(Threshold, 7), tensor(10, 1)
	list := &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{tensor(Threshold+1, 9)}}}}
	in := map[string]*pb.Value{"big": big, "small": small, "list": list}
	out, files, err := Externalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || out["big"].GetTensor().ShmFile == "" || out["small"] != small {
		t.Fatalf("files %v, out %v", files, out["big"])
	}
	if len(big.GetTensor().Data) != Threshold || big.GetTensor().ShmFile != "" {
		t.Fatal("Externalize modified its input")
	}
	if err := Internalize(out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out["big"].GetTensor().Data, big.GetTensor().Data) || out["list"].GetList().Items[0].GetTensor().Data[Threshold] != 9 {
		t.Fatal("data changed in transit")
	}
	for _, f := range files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("%s left behind", f)
		}
	}
}

func TestInternalizeRefusesForeignPaths(t *testing.T) {
	for _, p := range []string{"/etc/passwd", Dir() + "/../etc/passwd", Dir() + "/other-file"} {
		v := map[string]*pb.Value{"x": {Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{ShmFile: p}}}}
		if err := Internalize(v); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s: err = %v", p, err)
		}
	}
}

func BenchmarkShm16MB(b *testing.B) {
	in := map[string]*pb.Value{"x": tensor(16<<20, 1)}
	b.SetBytes(16 << 20)
	for i := 0; i < b.N; i++ {
		out, _, err := Externalize(in)
		if err != nil {
			b.Fatal(err)
		}
		if err := Internalize(out); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPoolReusesFiles(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	var first []string
	for round := 0; round < 3; round++ {
		in := map[string]*pb.Value{"a": tensor(Threshold*2, byte(round)), "b": tensor(Threshold, byte(10+round))}
		out, files, err := p.Externalize(in)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			first = files
		} else if len(files) != 2 || !(files[0] == first[0] || files[0] == first[1]) {
			t.Fatalf("round %d used new files %v, want reuse of %v", round, files, first)
		}
		if err := Internalize(out); err != nil {
			t.Fatal(err)
		}
		if d := out["a"].GetTensor().Data; len(d) != Threshold*2 || d[0] != byte(round) {
			t.Fatalf("round %d: a has %d bytes, first %d", round, len(d), d[0])
		}
		if d := out["b"].GetTensor().Data; len(d) != Threshold || d[len(d)-1] != byte(10+round) {
			t.Fatalf("round %d: b wrong", round)
		}
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("pooled file removed by the receiver: %v", err)
			}
		}
		p.Release(files)
	}
	p.Close()
	for _, f := range first {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("Close left %s", f)
		}
	}
}

func BenchmarkPool16MB(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	in := map[string]*pb.Value{"x": tensor(16<<20, 1)}
	b.SetBytes(16 << 20)
	for i := 0; i < b.N; i++ {
		out, files, err := p.Externalize(in)
		if err != nil {
			b.Fatal(err)
		}
		if err := Internalize(out); err != nil {
			b.Fatal(err)
		}
		p.Release(files)
	}
}
