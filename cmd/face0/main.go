// Command face0 is the face0 workflow engine: run workflows headlessly, list
// nodes, serve the editor, and (hidden) serve a built-in node pack as a plugin.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/face0/face0/internal/config"
	facepack "github.com/face0/face0/nodes/face"
	face0pack "github.com/face0/face0/nodes/face0"
	imagepack "github.com/face0/face0/nodes/image"
	trainpack "github.com/face0/face0/nodes/train"
	"github.com/face0/face0/plugins/sdk"
)

// builtinPacks are compiled into this binary and still run out of process: the
// host re-executes the binary as `face0 plugin <name>`.
var builtinPacks = map[string]func() sdk.Pack{
	"image": func() sdk.Pack { return imagepack.Pack(config.Version) },
	"face":  func() sdk.Pack { return facepack.Pack(config.Version) },
	"face0": func() sdk.Pack { return face0pack.Pack(config.Version) },
	"train": func() sdk.Pack { return trainpack.Pack(config.Version) },
}

func builtinNames() []string {
	names := make([]string, 0, len(builtinPacks))
	for n := range builtinPacks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

const usage = `face0 — typed, crash-isolated workflows for face-conditioned image generation

Usage:
  face0 run WORKFLOW.json|IMAGE.png [--set NODE.INPUT=VALUE ...] [--out DIR] [--input DIR] [--no-cache] [--local]
                                       (on the home's running server when there is one)
  face0 nodes [--json]
  face0 serve [--listen 127.0.0.1:8188] [--port N] [--token TOKEN]   (web API and editor; --nats embedded|URL accepts workers)
  face0 worker --nats URL [--token TOKEN] [--slots N]   (run nodes for a face0 server on another machine)
  face0 train DATASET [--out MODEL_DIR] [--steps N --batch B --lr X --resume]
  face0 synthfaces DIR [--train N --heldout M --per-identity K --seed S]
  face0 evaluate --model NAME [--report DIR]   (Tables 1 and 2 on synthfaces' held-out faces)
  face0 models list|check|make-tiny|import|attach-projection   (model folders; import an SD 1.x checkpoint)
  face0 bench [--runs N] [--cpuprofile FILE]   (engine speed, end to end, as ratios)
  face0 version
  face0 help [COMMAND]                 (a command's flags)

Folders live under $FACE0_HOME (default ~/.local/share/face0): input/, output/,
temp/, cache/, models/ ($FACE0_MODELS), plugins/ (third-party plugin binaries).
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "nodes":
		err = cmdNodes(os.Args[2:])
	case "serve":
		err = cmdServe(os.Args[2:])
	case "worker":
		err = cmdWorker(os.Args[2:])
	case "models":
		err = cmdModels(os.Args[2:])
	case "train":
		err = cmdTrain(os.Args[2:])
	case "synthfaces":
		err = cmdSynthfaces(os.Args[2:])
	case "evaluate":
		err = cmdEvaluate(os.Args[2:])
	case "bench":
		err = cmdBench(os.Args[2:])
	case "plugin":
		cmdPlugin(os.Args[2:])
	case "version", "--version":
		if len(os.Args) == 3 && isHelpFlag(os.Args[2]) {
			fmt.Println("usage: face0 version   (prints face0's version)")
			return
		}
		err = noArgs("version", os.Args[2:])
		if err == nil {
			fmt.Println("face0", config.Version)
		}
	case "help", "-h", "--help":
		err = cmdHelp(os.Args[2:])
	default:
		err = unknownCommand(os.Args[1])
	}
	if err != nil {
		var e *exitError
		if !errors.As(err, &e) || e.msg != "" {
			fmt.Fprintln(os.Stderr, "face0:", err)
		}
		os.Exit(exitStatus(err))
	}
}

// cmdPlugin serves a built-in pack; the host starts it, people do not.
func cmdPlugin(args []string) {
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "face0 plugin PACK: one of %v\n", builtinNames())
		os.Exit(2)
	}
	mk, ok := builtinPacks[args[0]]
	if !ok {
		mk, ok = hiddenPacks[args[0]]
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "face0 plugin: no built-in pack %q (have %v)\n", args[0], builtinNames())
		os.Exit(2)
	}
	sdk.Serve(mk())
}
