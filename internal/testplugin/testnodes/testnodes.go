// Package testnodes holds small nodes that both the engine's test pack and
// `face0 bench` run as real plugin processes: integers for chains of trivial
// nodes, and tensors of any size for the data path between processes.
package testnodes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

// Types are the port types these nodes introduce.
func Types() []*pb.TypeSpec {
	return []*pb.TypeSpec{{Name: "TENSORS", Description: "a record of tensors and lists of tensors, for tests of nested values", Color: "#8a6"}}
}

// Trivial are nodes that do next to nothing, for measuring the engine itself.
func Trivial() []sdk.Node {
	return []sdk.Node{
		sdk.Func("Const", constNode, sdk.Category("test")),
		sdk.Func("Add", add, sdk.Category("test")),
	}
}

// Tensors are nodes that make, pass on, copy and check tensors.
func Tensors() []sdk.Node {
	return []sdk.Node{
		sdk.Func("MakeTensor", makeTensor, sdk.Category("test")),
		sdk.Func("PassTensor", passTensor, sdk.Category("test")),
		sdk.Func("CopyTensor", copyTensor, sdk.Category("test")),
		sdk.Func("TensorSum", tensorSum, sdk.Category("test")),
		sdk.Func("TensorDigest", tensorDigest, sdk.Category("test")),
		sdk.Func("MakeTensors", makeTensors, sdk.Category("test")),
		sdk.Func("PassTensors", passTensors, sdk.Category("test")),
		sdk.Func("TensorsDigest", tensorsDigest, sdk.Category("test")),
	}
}

// Bench is the pack `face0 bench` runs.
func Bench(version string) sdk.Pack {
	return sdk.Pack{Name: "bench", Version: version, Nodes: append(Trivial(), Tensors()...), Types: Types()}
}

type intOut struct {
	Value int64 `face0:"INT"`
}

type constIn struct {
	Value int64 `face0:"value,min=-1000000,max=1000000"`
}

func constNode(_ *sdk.Context, in constIn) (intOut, error) { return intOut{in.Value}, nil }

type addIn struct {
	A int64 `face0:"a"`
	B int64 `face0:"b,default=0"`
}

func add(_ *sdk.Context, in addIn) (intOut, error) { return intOut{in.A + in.B}, nil }

type makeTensorIn struct {
	MB   int64   `face0:"mb,min=0,max=1024"`
	KB   int64   `face0:"kb,min=0,max=1048576,default=0" doc:"added to mb, for sizes that are not whole MiB"`
	Fill float64 `face0:"fill,default=1"`
	Ramp bool    `face0:"ramp,default=false" doc:"add i mod 251 to element i, so that misplaced bytes show"`
}

type tensorOut struct {
	Latent sdk.Tensor `face0:"LATENT,type=LATENT"`
}

func fill(n int64, f float64, ramp bool) []float32 {
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(f)
		if ramp {
			data[i] += float32(i % 251)
		}
	}
	return data
}

func makeTensor(_ *sdk.Context, in makeTensorIn) (tensorOut, error) {
	n := (in.MB<<20 + in.KB<<10) / 4
	return tensorOut{sdk.Tensor{Data: fill(n, in.Fill, in.Ramp), Shape: []int64{1, n}}}, nil
}

type rawLatentIn struct {
	Latent sdk.Raw `face0:"latent,type=LATENT"`
}

type rawLatentOut struct {
	Latent sdk.Raw `face0:"LATENT,type=LATENT"`
}

// passTensor hands its input on unchanged, like a node that only looks at a
// tensor's shape: nothing of it needs copying.
func passTensor(_ *sdk.Context, in rawLatentIn) (rawLatentOut, error) {
	return rawLatentOut{in.Latent}, nil
}

type tensorIn struct {
	Latent sdk.Tensor `face0:"latent,type=LATENT"`
}

// copyTensor returns a new tensor with its input's elements, like a node
// that computes a fresh result of the same size.
func copyTensor(_ *sdk.Context, in tensorIn) (tensorOut, error) {
	return tensorOut{sdk.Tensor{Data: append([]float32(nil), in.Latent.Data...), Shape: in.Latent.Shape}}, nil
}

type floatOut struct {
	Value float64 `face0:"FLOAT"`
}

func tensorSum(_ *sdk.Context, in tensorIn) (floatOut, error) {
	var s float64
	for _, v := range in.Latent.Data {
		s += float64(v)
	}
	return floatOut{s}, nil
}

type stringOut struct {
	Value string `face0:"STRING"`
}

func digest(t *pb.Tensor) string {
	h := sha256.Sum256(t.GetData())
	return fmt.Sprintf("%s%v:%s", t.GetDtype(), t.GetShape(), hex.EncodeToString(h[:8]))
}

// tensorDigest names a tensor's dtype, shape and a hash of its bytes.
func tensorDigest(_ *sdk.Context, in rawLatentIn) (stringOut, error) {
	if err := value.CheckTensor(in.Latent.GetTensor()); err != nil {
		return stringOut{}, err
	}
	return stringOut{digest(in.Latent.GetTensor())}, nil
}

type makeTensorsIn struct {
	MB    int64 `face0:"mb,min=0,max=256"`
	Count int64 `face0:"count,min=1,max=16,default=3"`
}

type tensorsOut struct {
	Tensors sdk.Raw `face0:"TENSORS,type=TENSORS"`
}

// makeTensors builds a record {"big": [count tensors of mb MiB], "small": a
// tensor of 12 bytes, "label": a string}; each big tensor differs.
func makeTensors(_ *sdk.Context, in makeTensorsIn) (tensorsOut, error) {
	n := in.MB << 20 / 4
	items := make([]*pb.Value, in.Count)
	for i := range items {
		items[i] = value.Float32Tensor("LATENT", fill(n, float64(i+1), true), 1, n)
	}
	rec := &pb.Record{Fields: map[string]*pb.Value{
		"big":   {Kind: &pb.Value_List{List: &pb.List{Items: items}}},
		"small": value.Float32Tensor("LATENT", []float32{1, 2, 3}, 3),
		"label": value.String("tensors"),
	}}
	return tensorsOut{&pb.Value{Type: "TENSORS", Kind: &pb.Value_Record{Record: rec}}}, nil
}

type tensorsIn struct {
	Tensors sdk.Raw `face0:"tensors,type=TENSORS"`
}

func passTensors(_ *sdk.Context, in tensorsIn) (tensorsOut, error) {
	return tensorsOut{in.Tensors}, nil
}

// tensorsDigest lists the digest of every tensor in a TENSORS record.
func tensorsDigest(_ *sdk.Context, in tensorsIn) (stringOut, error) {
	var parts []string
	var walk func(path string, v *pb.Value) error
	walk = func(path string, v *pb.Value) error {
		switch k := v.GetKind().(type) {
		case *pb.Value_Tensor:
			if err := value.CheckTensor(k.Tensor); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			parts = append(parts, path+"="+digest(k.Tensor))
		case *pb.Value_List:
			for i, e := range k.List.Items {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
					return err
				}
			}
		case *pb.Value_Record:
			names := make([]string, 0, len(k.Record.Fields))
			for n := range k.Record.Fields {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if err := walk(path+"."+n, k.Record.Fields[n]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("", in.Tensors); err != nil {
		return stringOut{}, err
	}
	return stringOut{fmt.Sprint(parts)}, nil
}
