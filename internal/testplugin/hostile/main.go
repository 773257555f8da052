// Command hostile is a plugin that misbehaves on purpose, for the reliability
// tests: it hangs or dies at start or while describing its nodes, ignores
// cancellation, floods its output and crashes mid-node, as real plugins do.
// Its nodes also compute results that tests check, so that a run that
// survived the abuse can be shown to be right.
//
// HOSTILE (a comma-separated list) says what to do besides serving nodes:
//
//	start-hang            never finish starting (no handshake)
//	describe-hang         every Describe call hangs
//	describe-hang-after=N the first N Describe calls answer, later ones hang
//	describe-panic        Describe panics
//	describe-exit         the process exits while describing its nodes
//	fingerprint-hang      Fingerprint calls hang
//
// HOSTILE_MARK, when set, names a file the process appends its pid to as it
// starts, so that tests know which processes ran.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/sdk"
)

func main() {
	if mark := os.Getenv("HOSTILE_MARK"); mark != "" {
		f, err := os.OpenFile(mark, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
		}
	}
	if has("start-hang") {
		fmt.Fprintln(os.Stderr, "hostile: hanging before the handshake")
		select {}
	}
	sdk.Serve(sdk.Pack{Name: "hostile", Version: "1.0.0", Nodes: []sdk.Node{
		sdk.Func("Mood", mood, sdk.Category("hostile"), sdk.Choices("mood", describeHook),
			sdk.WithFingerprint(fingerprintHook)),
		sdk.Func("Stubborn", stubborn, sdk.Category("hostile")),
		sdk.Func("Work", work, sdk.Category("hostile")),
		sdk.Func("Step", step, sdk.Category("hostile")),
		sdk.Func("Echo", echo, sdk.Category("hostile"), sdk.OutputNode()),
		sdk.Func("Pid", pid, sdk.Category("hostile"), sdk.NonDeterministic()),
		sdk.Func("Flood", flood, sdk.Category("hostile"), sdk.NonDeterministic()),
		sdk.Func("Crash", crash, sdk.Category("hostile"), sdk.NonDeterministic()),
		sdk.Func("Fill", fill, sdk.Category("hostile")),
		sdk.Func("Sum", sum, sdk.Category("hostile")),
	}})
}

// has reports whether HOSTILE lists what.
func has(what string) bool {
	_, ok := setting(what)
	return ok
}

// setting returns the value of what=value in HOSTILE.
func setting(what string) (string, bool) {
	for _, s := range strings.Split(os.Getenv("HOSTILE"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(s), "=")
		if k == what {
			return v, true
		}
	}
	return "", false
}

// describes counts the calls of describeHook: the first is the SDK's check
// of the pack as the process starts, the others are the host's Describe calls.
var describes atomic.Int64

func describeHook() []string {
	n := describes.Add(1) - 1
	if n > 0 {
		fmt.Fprintf(os.Stderr, "hostile: describe call %d\n", n)
		if has("describe-hang") {
			select {}
		}
		if v, ok := setting("describe-hang-after"); ok {
			if after, _ := strconv.ParseInt(v, 10, 64); n > after {
				select {}
			}
		}
		if has("describe-panic") {
			panic("hostile: boom while describing")
		}
		if has("describe-exit") {
			fmt.Fprintln(os.Stderr, "hostile: exiting while describing my nodes")
			os.Exit(7)
		}
	}
	return []string{"calm", "grumpy"}
}

func fingerprintHook(ctx context.Context, _ *pb.Dirs, _ map[string]*pb.Value) ([]byte, error) {
	if has("fingerprint-hang") {
		select {}
	}
	return []byte("same"), nil
}

type intOut struct {
	Value int64 `face0:"INT"`
}

type moodIn struct {
	Mood string `face0:"mood,default=calm"`
}

func mood(_ *sdk.Context, in moodIn) (intOut, error) { return intOut{int64(len(in.Mood))}, nil }

type stubbornIn struct {
	Ms int64 `face0:"ms,default=60000"`
}

// stubborn ignores cancellation, like a badly written node. It reports
// progress as it starts, so that tests know it runs.
func stubborn(ctx *sdk.Context, in stubbornIn) (intOut, error) {
	ctx.Logf("stubborn node running in process %d", os.Getpid())
	ctx.Progress(0, 1)
	time.Sleep(time.Duration(in.Ms) * time.Millisecond)
	return intOut{int64(os.Getpid())}, nil
}

type workIn struct {
	Ms    int64 `face0:"ms,min=0,max=600000,default=0"`
	Value int64 `face0:"value,default=0"`
}

type workOut struct {
	Value int64 `face0:"INT"`
	Pid   int64 `face0:"pid,type=INT"`
}

// work is a well-behaved node: it sleeps (answering cancellation) and
// returns its input and its process.
func work(ctx *sdk.Context, in workIn) (workOut, error) {
	ctx.Progress(0, 1)
	select {
	case <-ctx.Done():
		return workOut{}, ctx.Err()
	case <-time.After(time.Duration(in.Ms) * time.Millisecond):
	}
	return workOut{in.Value, int64(os.Getpid())}, nil
}

type stepIn struct {
	X  int64 `face0:"x"`
	Ms int64 `face0:"ms,min=0,max=600000,default=0"`
}

// step is one link of a chain whose result tests recompute: x*3+1 mod 1e9+7.
func step(ctx *sdk.Context, in stepIn) (intOut, error) {
	select {
	case <-ctx.Done():
		return intOut{}, ctx.Err()
	case <-time.After(time.Duration(in.Ms) * time.Millisecond):
	}
	return intOut{StepOf(in.X)}, nil
}

// StepOf is what Step computes.
func StepOf(x int64) int64 { return (x*3 + 1) % 1_000_000_007 }

type echoIn struct {
	X int64 `face0:"x"`
}

// echo is an output node: what a workflow computes for its own sake.
func echo(_ *sdk.Context, in echoIn) (intOut, error) { return intOut{in.X}, nil }

type pidIn struct{}

func pid(*sdk.Context, pidIn) (intOut, error) { return intOut{int64(os.Getpid())}, nil }

type floodIn struct {
	Lines int64  `face0:"lines,min=0,max=10000000,default=1000"`
	Size  int64  `face0:"size,min=1,max=10000000,default=40"`
	To    string `face0:"to,enum=stderr|stdout,default=stderr"`
	Tag   string `face0:"tag,default=flood"`
}

// flood writes lines of about size bytes: "<tag> <n> xxxx...".
func flood(_ *sdk.Context, in floodIn) (intOut, error) {
	out := os.Stderr
	if in.To == "stdout" {
		out = os.Stdout
	}
	for i := int64(0); i < in.Lines; i++ {
		line := fmt.Sprintf("%s %d ", in.Tag, i)
		if pad := int(in.Size) - len(line); pad > 0 {
			line += strings.Repeat("x", pad)
		}
		fmt.Fprintln(out, line)
	}
	return intOut{in.Lines}, nil
}

type crashIn struct {
	Ms  int64  `face0:"ms,min=0,max=600000,default=0"`
	How string `face0:"how,enum=exit|panic|kill,default=exit"`
}

// crash dies mid-node after ms.
func crash(ctx *sdk.Context, in crashIn) (intOut, error) {
	ctx.Progress(0, 1)
	time.Sleep(time.Duration(in.Ms) * time.Millisecond)
	switch in.How {
	case "panic":
		// In a goroutine: the SDK turns a panic in the node's own goroutine
		// into the node's error.
		go panic("hostile: crashing on purpose")
		select {}
	case "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	fmt.Fprintln(os.Stderr, "hostile: exiting mid-node on purpose")
	os.Exit(9)
	return intOut{}, nil
}

type fillIn struct {
	KB    int64   `face0:"kb,min=1,max=1000000,default=1024"`
	Value float64 `face0:"value,default=1"`
}

type latentOut struct {
	Latent sdk.Tensor `face0:"LATENT,type=LATENT"`
}

// fill makes a tensor of kb KiB filled with value (large ones travel through
// shared memory).
func fill(_ *sdk.Context, in fillIn) (latentOut, error) {
	data := make([]float32, in.KB<<10/4)
	for i := range data {
		data[i] = float32(in.Value)
	}
	return latentOut{sdk.Tensor{Data: data, Shape: []int64{1, int64(len(data))}}}, nil
}

type sumIn struct {
	Latent sdk.Tensor `face0:"latent,type=LATENT"`
}

type floatOut struct {
	Value float64 `face0:"FLOAT"`
}

func sum(_ *sdk.Context, in sumIn) (floatOut, error) {
	var s float64
	for _, v := range in.Latent.Data {
		s += float64(v)
	}
	return floatOut{s}, nil
}
