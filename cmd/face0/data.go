package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/face0/face0/synthfaces"
)

const synthfacesUsage = `usage: face0 synthfaces DIR [--train N] [--heldout M] [--per-identity K] [--seed S] [--size PX]

Writes the procedural synthfaces dataset: DIR/train/ and DIR/heldout/ with PNGs,
.txt captions and metadata.jsonl (identity_embedding in space synthfaces-attr-64),
and DIR/dataset.json. Same seed, same bytes. Train on it with: face0 train DIR
`

func cmdSynthfaces(args []string) error {
	fs := flag.NewFlagSet("synthfaces", flag.ContinueOnError)
	train := fs.Int("train", 200, "training identities (0: none)")
	held := fs.Int("heldout", 20, "held-out identities (0: none)")
	per := fs.Int("per-identity", 8, "images per identity")
	seed := fs.Uint64("seed", 0, "dataset seed")
	size := fs.Int("size", 128, "image side in pixels")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, synthfacesUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitCode(2)
	}
	// synthfaces.Options treats 0 as "default" and negative as "none".
	none := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	if *train == 0 && *held == 0 {
		return fmt.Errorf("synthfaces: --train and --heldout are both 0: nothing to write")
	}
	tty := isTerminal(os.Stderr)
	var mu sync.Mutex
	last := time.Time{}
	m, err := synthfaces.Generate(pos[0], synthfaces.Options{
		Seed: *seed, Train: none(*train), HeldOut: none(*held), PerIdentity: *per, Size: *size,
		Progress: func(done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if tty && (time.Since(last) > 100*time.Millisecond || done == total) {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "\r\x1b[2Ksynthfaces %s %d/%d", bar(int64(done), int64(total), 30), done, total)
			}
		},
	})
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Printf("wrote %d images to %s (train %s: identities %d..%d; heldout %s: identities %d..%d)\n",
		m.Images, pos[0], m.Train.Folder, m.Train.First, m.Train.End-1, m.HeldOut.Folder, m.HeldOut.First, m.HeldOut.End-1)
	return nil
}
