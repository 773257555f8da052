package main

import (
	"context"
	"strconv"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

// Nodes with side effects: each writes its value as a text file into the
// output folder.
func sideEffectNodes() []sdk.Node {
	return []sdk.Node{
		sdk.Func("WriteText", writeText, sdk.Category("test"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles)),
		// No check: runs whenever a run wants it.
		sdk.Func("WriteTextUnchecked", writeText, sdk.Category("test"), sdk.OutputNode(), sdk.SideEffects(nil)),
		// A check that panics: the node runs again, the plugin lives on.
		sdk.Func("WriteString", writeString, sdk.Category("test"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles)),
		// Sleeps first, with progress: a write that takes a while.
		sdk.Func("WriteTextSlow", writeTextSlow, sdk.Category("test"), sdk.OutputNode(), sdk.SideEffects(sdk.VerifyFiles)),
		sdk.Func("WriteTextBadCheck", writeText, sdk.Category("test"), sdk.OutputNode(),
			sdk.SideEffects(func(context.Context, *pb.Dirs, map[string]*pb.Value, *pb.Outputs) error { panic("broken check") })),
	}
}

type writeTextIn struct {
	Value  int64  `face0:"value"`
	Prefix string `face0:"prefix,default=text"`
}

type writeTextOut struct {
	Value int64   `face0:"INT"`
	UI    sdk.Raw `face0:"files,type=UI,ui"`
}

func writeText(ctx *sdk.Context, in writeTextIn) (writeTextOut, error) {
	f, err := ctx.SaveFile("output", in.Prefix, ".txt", []byte(strconv.FormatInt(in.Value, 10)+"\n"))
	if err != nil {
		return writeTextOut{}, err
	}
	return writeTextOut{Value: in.Value, UI: sdk.FilesUI(f)}, nil
}

type writeStringIn struct {
	Text   string `face0:"text"`
	Prefix string `face0:"prefix,default=text"`
}

type writeStringOut struct {
	UI sdk.Raw `face0:"files,type=UI,ui"`
}

func writeString(ctx *sdk.Context, in writeStringIn) (writeStringOut, error) {
	f, err := ctx.SaveFile("output", in.Prefix, ".txt", []byte(in.Text+"\n"))
	if err != nil {
		return writeStringOut{}, err
	}
	return writeStringOut{UI: sdk.FilesUI(f)}, nil
}

type writeTextSlowIn struct {
	Value  int64  `face0:"value"`
	Prefix string `face0:"prefix,default=text"`
	Ms     int64  `face0:"ms,min=0,max=600000,default=0"`
}

func writeTextSlow(ctx *sdk.Context, in writeTextSlowIn) (writeTextOut, error) {
	if _, err := sleep(ctx, sleepIn{Ms: in.Ms, Steps: 10}); err != nil {
		return writeTextOut{}, err
	}
	return writeText(ctx, writeTextIn{Value: in.Value, Prefix: in.Prefix})
}
