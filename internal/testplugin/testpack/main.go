// Command testpack is a plugin for the engine's own tests: small nodes that add,
// fail, panic, exit, sleep, and move large tensors, run as a real plugin process.
package main

import (
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"time"

	"github.com/face0/face0/internal/testplugin/testnodes"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/shm"
	"github.com/face0/face0/plugins/value"
)

func main() {
	nodes := append(append(append(testnodes.Trivial(), testnodes.Tensors()...), sideEffectNodes()...), modelNodes()...)
	// A machine may run another version of a pack: tests of the scheduler
	// set one.
	version := "1.0.0"
	if v := os.Getenv("FACE0_TESTPACK_VERSION"); v != "" {
		version = v
	}
	sdk.Serve(sdk.Pack{Name: "testpack", Version: version, Types: testnodes.Types(), Nodes: append(nodes,
		sdk.Func("Concat", concat, sdk.Category("test")),
		sdk.Func("Fail", fail, sdk.Category("test")),
		sdk.Func("Panic", panicNode, sdk.Category("test")),
		sdk.Func("Exit", exitNode, sdk.Category("test")),
		sdk.Func("Sleep", sleep, sdk.Category("test")),
		sdk.Func("Stubborn", stubborn, sdk.Category("test")),
		sdk.Func("Pid", pid, sdk.Category("test"), sdk.NonDeterministic()),
		sdk.Func("Random", random, sdk.Category("test"), sdk.NonDeterministic()),
		sdk.Func("TensorLen", tensorLen, sdk.Category("test")),
		sdk.Func("DieMidWrite", dieMidWrite, sdk.Category("test")),
		sdk.Func("KeepInput", keepInput, sdk.Category("test"), sdk.NonDeterministic()),
		sdk.Func("Embed", embed, sdk.Category("test"),
			sdk.TypeParam("embedding", "space", func() map[string]string { return map[string]string{"a": "space-a", "b": "space-b"} })),
		sdk.Func("UseEmbed", useEmbed, sdk.Category("test"),
			sdk.TypeParam("embedding", "model", func() map[string]string { return map[string]string{"ma": "space-a", "mb": "space-b"} })),
	)})
}

type intOut struct {
	Value int64 `face0:"INT"`
}

type concatIn struct {
	A string `face0:"a"`
	B string `face0:"b,default="`
}

type strOut struct {
	Value string `face0:"STRING"`
}

func concat(_ *sdk.Context, in concatIn) (strOut, error) { return strOut{in.A + in.B}, nil }

type failIn struct {
	Message string `face0:"message,default=it failed"`
	After   int64  `face0:"after,optional" doc:"a link that orders this node after another"`
}

func fail(_ *sdk.Context, in failIn) (intOut, error) { return intOut{}, errors.New(in.Message) }

type panicIn struct {
	After int64 `face0:"after,optional"`
}

func panicNode(_ *sdk.Context, in panicIn) (intOut, error) { panic("boom from the test node") }

type exitIn struct {
	Code  int   `face0:"code,default=3"`
	After int64 `face0:"after,optional"`
}

func exitNode(_ *sdk.Context, in exitIn) (intOut, error) {
	os.Exit(in.Code)
	return intOut{}, nil
}

type sleepIn struct {
	Ms      int64 `face0:"ms,min=0,max=600000"`
	Steps   int64 `face0:"steps,min=1,max=1000,default=4"`
	Value   int64 `face0:"value,default=0"`
	Preview bool  `face0:"preview,default=false" doc:"show an 8x8 image at every step, its grey the step's"`
}

func sleep(ctx *sdk.Context, in sleepIn) (intOut, error) {
	per := time.Duration(in.Ms) * time.Millisecond / time.Duration(in.Steps)
	for i := int64(1); i <= in.Steps; i++ {
		select {
		case <-ctx.Done():
			return intOut{}, ctx.Err()
		case <-time.After(per):
		}
		if in.Preview {
			img := image.NewGray(image.Rect(0, 0, 8, 8))
			for p := range img.Pix {
				img.Pix[p] = uint8(i)
			}
			ctx.Preview(img)
		}
		ctx.Progress(i, in.Steps)
	}
	ctx.Logf("slept %d ms", in.Ms)
	return intOut{in.Value}, nil
}

type randomIn struct {
	Max int64 `face0:"max,default=1000000000"`
}

func random(_ *sdk.Context, in randomIn) (intOut, error) { return intOut{rand.Int64N(in.Max)}, nil }

type embedIn struct {
	Space string `face0:"space,enum=a|b,default=a"`
	Dim   int    `face0:"dim,min=1,max=4096,default=8"`
}

type embedOut struct {
	Embedding sdk.Embedding `face0:"embedding"`
}

func embed(_ *sdk.Context, in embedIn) (embedOut, error) {
	v := make([]float32, in.Dim)
	for i := range v {
		v[i] = float32(i)
	}
	return embedOut{sdk.Embedding{Space: "space-" + in.Space, Vector: v}}, nil
}

type useEmbedIn struct {
	Model     string        `face0:"model,enum=ma|mb,default=ma"`
	Embedding sdk.Embedding `face0:"embedding"`
}

func useEmbed(_ *sdk.Context, in useEmbedIn) (intOut, error) {
	want := map[string]string{"ma": "space-a", "mb": "space-b"}[in.Model]
	if in.Embedding.Space != want {
		return intOut{}, fmt.Errorf("embedding from %s cannot condition model %s (%s)", in.Embedding.Space, in.Model, want)
	}
	return intOut{int64(len(in.Embedding.Vector))}, nil
}

type tensorLenIn struct {
	Latent sdk.Raw `face0:"latent,type=LATENT"`
}

// tensorLen touches only the tensor's length: for measuring transfer alone.
func tensorLen(_ *sdk.Context, in tensorLenIn) (intOut, error) {
	return intOut{int64(len(in.Latent.GetTensor().GetData()))}, nil
}

type stubbornIn struct {
	Ms int64 `face0:"ms,default=60000"`
}

// stubborn ignores cancellation, like a badly written node.
func stubborn(ctx *sdk.Context, in stubbornIn) (intOut, error) {
	ctx.Progress(0, 1)
	time.Sleep(time.Duration(in.Ms) * time.Millisecond)
	return intOut{1}, nil
}

type pidIn struct{}

// pid tells tests which plugin process served them.
func pid(*sdk.Context, pidIn) (intOut, error) { return intOut{int64(os.Getpid())}, nil }

type dieMidWriteIn struct {
	MB int64 `face0:"mb,min=1,max=256,default=4"`
}

// dieMidWrite dies while its output is half written, as a plugin killed
// mid-write would: the SDK's own writer makes the file, which is then cut to
// half and the process exits before any response names it.
func dieMidWrite(_ *sdk.Context, in dieMidWriteIn) (intOut, error) {
	v := value.Float32Tensor("LATENT", make([]float32, in.MB<<20/4), 1, in.MB<<20/4)
	_, files, err := shm.WriteOutputs(map[string]*pb.Value{"x": v}, nil)
	if err != nil || len(files) != 1 {
		return intOut{}, fmt.Errorf("write: %v %v", files, err)
	}
	os.Truncate(files[0], in.MB<<19)
	fmt.Fprintln(os.Stderr, "dying mid-write:", files[0])
	os.Exit(3)
	return intOut{}, nil
}

type keepInputIn struct {
	Latent sdk.Tensor `face0:"latent,type=LATENT,optional"`
}

var kept []float32

// keepInput keeps its input past the call, against the SDK's rule, and
// reads what it kept on its next call without one.
func keepInput(_ *sdk.Context, in keepInputIn) (intOut, error) {
	if in.Latent.Data != nil {
		kept = in.Latent.Data
		return intOut{int64(len(kept))}, nil
	}
	var s float32
	for _, v := range kept {
		s += v
	}
	return intOut{int64(s)}, nil
}
