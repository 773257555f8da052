// Command slowpack is a node pack for the server's tests only: a node that takes
// as long as it is told, reporting progress and previews, and one that fails.
// Real built-in nodes finish too fast to interrupt or to hold the queue.
package main

import (
	"errors"
	"image"
	"image/color"
	"time"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

func main() {
	sdk.Serve(sdk.Pack{Name: "slowpack", Version: "1.0.0", Nodes: []sdk.Node{
		sdk.Func("Slow", slow, sdk.OutputNode(), sdk.NonDeterministic(), sdk.Category("testing")),
		sdk.Func("Fail", fail, sdk.OutputNode(), sdk.NonDeterministic(), sdk.Category("testing")),
	}})
}

type slowIn struct {
	Steps   int  `face0:"steps,min=1,max=1000,default=3"`
	DelayMS int  `face0:"delay_ms,min=0,max=60000,default=10"`
	Preview bool `face0:"preview,default=false"`
}

type uiOut struct {
	UI sdk.Raw `face0:"text,type=UI,ui"`
}

func slow(ctx *sdk.Context, in slowIn) (uiOut, error) {
	img := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := range 16 {
		img.Set(i%4, i/4, color.NRGBA{R: uint8(i * 16), A: 255})
	}
	for i := 1; i <= in.Steps; i++ {
		select {
		case <-ctx.Done():
			return uiOut{}, errors.New("cancelled")
		case <-time.After(time.Duration(in.DelayMS) * time.Millisecond):
		}
		ctx.Progress(int64(i), int64(in.Steps))
		if in.Preview {
			ctx.Preview(img)
		}
	}
	return uiOut{UI: &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{value.String("done")}}}}}, nil
}

type failIn struct {
	Message string `face0:"message,default=boom"`
}

func fail(ctx *sdk.Context, in failIn) (uiOut, error) {
	return uiOut{}, errors.New(in.Message)
}
