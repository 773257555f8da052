package main

import (
	"fmt"
	"os"
	"strings"
)

// cmdHelp prints the usage, or a command's own (its flags).
func cmdHelp(args []string) error {
	switch {
	case len(args) == 0 || isHelpFlag(args[0]):
		fmt.Print(usage)
		return nil
	case len(args) > 1:
		fmt.Fprint(os.Stderr, usage)
		return exitCode(2)
	}
	for _, c := range commandNames() {
		if c == args[0] && c != "help" && c != "version" {
			os.Args = []string{os.Args[0], c, "--help"}
			main()
			return nil
		}
	}
	return unknownCommand(args[0])
}

// isHelpFlag tells -h, -help and --help.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// noArgs refuses arguments a command does not take.
func noArgs(cmd string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "face0 %s: unexpected argument %q (face0 %s takes none)\n", cmd, args[0], cmd)
	return exitCode(2)
}

// commandNames are the commands a person types, for "did you mean" and
// face0 help COMMAND: those the usage text lists, so that a new command
// needs only its usage line.
func commandNames() []string {
	var names []string
	for _, line := range strings.Split(usage, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(line, "  face0 ") {
			names = append(names, f[1])
		}
	}
	return names
}

// unknownCommand says so and suggests the nearest command.
func unknownCommand(name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := nearest(name, commandNames()); s != "" {
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
