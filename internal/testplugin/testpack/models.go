package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
	"github.com/face0/face0/plugins/value"
)

// ModelText stands for a node that needs a model on disk: its model input
// offers the folders of the machine's models directory ($FACE0_MODELS, or
// the folder the host gives), so that a machine without the model refuses
// it, and its result is the folder's model.txt.
func modelNodes() []sdk.Node {
	return []sdk.Node{
		sdk.Func("ModelText", modelText, sdk.Category("test"), sdk.Choices("model", modelFolders), sdk.WithFingerprint(modelPrint)),
		sdk.Func("DeviceText", deviceText, sdk.Category("test")),
	}
}

// DeviceText stands for a node that runs on a device, like the samplers: a
// device input of cpu or cuda. It runs on either (the test machine has no
// GPU); the scheduler sends device cuda only to a machine with one.
type deviceTextIn struct {
	Device string `face0:"device,enum=cpu|cuda,default=cpu"`
	Tag    string `face0:"tag,default="`
}

func deviceText(_ *sdk.Context, in deviceTextIn) (modelTextOut, error) {
	return modelTextOut{"ran on " + in.Device + in.Tag}, nil
}

func modelsDir(dirs *pb.Dirs) string {
	if d := dirs.GetModels(); d != "" {
		return d
	}
	return os.Getenv("FACE0_MODELS")
}

func modelFolders() []string {
	entries, _ := os.ReadDir(modelsDir(nil))
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

type modelTextIn struct {
	Model string `face0:"model"`
	Ms    int64  `face0:"ms,min=0,max=600000,default=0" doc:"sleep this long first, in steps with progress"`
}

type modelTextOut struct {
	Text string `face0:"STRING"`
}

func modelText(ctx *sdk.Context, in modelTextIn) (modelTextOut, error) {
	if _, err := sleep(ctx, sleepIn{Ms: in.Ms, Steps: 4}); err != nil {
		return modelTextOut{}, err
	}
	b, err := os.ReadFile(filepath.Join(modelsDir(ctx.Dirs), in.Model, "model.txt"))
	if err != nil {
		return modelTextOut{}, fmt.Errorf("model %s: %w", in.Model, err)
	}
	return modelTextOut{string(b)}, nil
}

func modelPrint(_ context.Context, dirs *pb.Dirs, in map[string]*pb.Value) ([]byte, error) {
	name, _ := value.AsString(in["model"])
	b, err := os.ReadFile(filepath.Join(modelsDir(dirs), name, "model.txt"))
	if err != nil {
		return []byte("missing"), nil
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}
