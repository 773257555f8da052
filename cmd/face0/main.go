// Command face0 is the face0 workflow engine: run workflows headlessly, list
// nodes, serve the editor, and (hidden) serve a built-in node pack as a plugin.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

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
  face0 serve [--listen 127.0.0.1:8188] [--token TOKEN]   (web API and editor)
  face0 models list|check DIR|make-tiny DIR
  face0 train DATASET [--out MODEL_DIR] [--steps N --batch B --lr X --resume]
  face0 synthfaces DIR [--train N --heldout M --per-identity K --seed S]
  face0 evaluate --model NAME [--report DIR]   (Tables 1 and 2 on synthfaces' held-out faces)
  face0 version
  face0 help [COMMAND]                 (a command's flags)

Folders live under $FACE0_HOME (default ~/.local/share/face0): input/, output/,
temp/, cache/, models/ ($FACE0_MODELS), plugins/ (third-party plugin binaries).
`

// cmdHelp prints the usage, or a command's own (its flags).
func cmdHelp(args []string) error {
	switch {
	case len(args) == 0:
		fmt.Print(usage)
		return nil
	case len(args) > 1:
		fmt.Fprint(os.Stderr, usage)
		return exitCode(2)
	}
	for _, c := range commandNames {
		if c == args[0] && c != "help" && c != "version" {
			os.Args = []string{os.Args[0], c, "--help"}
			main()
			return nil
		}
	}
	return unknownCommand(args[0])
}

// noArgs refuses arguments a command does not take.
func noArgs(cmd string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "face0 %s: unexpected argument %q (face0 %s takes none)\n", cmd, args[0], cmd)
	return exitCode(2)
}

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
	case "models":
		err = cmdModels(os.Args[2:])
	case "train":
		err = cmdTrain(os.Args[2:])
	case "synthfaces":
		err = cmdSynthfaces(os.Args[2:])
	case "evaluate":
		err = cmdEvaluate(os.Args[2:])
	case "plugin":
		cmdPlugin(os.Args[2:])
	case "version", "--version":
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

// commandNames are the commands a person types, for "did you mean".
var commandNames = []string{"run", "nodes", "serve", "models", "train", "synthfaces", "evaluate", "version", "help"}

// unknownCommand says so and suggests the nearest command.
func unknownCommand(name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := nearest(name, commandNames); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	fmt.Fprintf(os.Stderr, "face0: %s\n\n%s", msg, usage)
	return exitCode(2)
}

// nearest is the candidate closest to name by edit distance, if it is close
// enough to be a typo (or name is a prefix of it).
func nearest(name string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), c)
		if strings.HasPrefix(c, strings.ToLower(name)) && len(name) >= 2 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(1, len(name)/3) {
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours ("rnu" is 1 from "run").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// cmdPlugin serves a built-in pack; the host starts it, people do not.
func cmdPlugin(args []string) {
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "face0 plugin PACK: one of %v\n", builtinNames())
		os.Exit(2)
	}
	mk, ok := builtinPacks[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "face0 plugin: no built-in pack %q (have %v)\n", args[0], builtinNames())
		os.Exit(2)
	}
	sdk.Serve(mk())
}
