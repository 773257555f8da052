package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/internal/assets"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/training/base"
)

// readmeShortening makes the README's slow commands quick, only with flags
// the README itself shows (the test checks that it does): per face0
// subcommand, flags whose values are replaced and flags added.
var readmeShortening = map[string]struct {
	replace map[string]string
	add     []string
}{
	"synthfaces": {add: []string{"--train", "20", "--heldout", "1", "--per-identity", "4"}},
	"train":      {replace: map[string]string{"--steps": "3"}, add: []string{"--text-pretrain", "3"}},
}

// readmeBlocks are the README's ```sh blocks, each a list of commands
// (comments dropped, continuation lines joined).
func readmeBlocks(t *testing.T, readme string) [][]string {
	t.Helper()
	var blocks [][]string
	var cur []string
	in := false
	pending := ""
	sc := bufio.NewScanner(strings.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in, cur = true, nil
			continue
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, cur)
			continue
		case !in:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = strings.TrimSpace(pending + line)
		pending = ""
		if line != "" && !strings.HasPrefix(line, "#") {
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatal("README.md: a ```sh block is not closed")
	}
	return blocks
}

// standInCheckpoint writes a tiny random SD 1.x single-file checkpoint at
// path (as ComfyUI keeps one in models/checkpoints) unless a file is there.
func standInCheckpoint(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := base.WriteCheckpoint(path, base.TinyCheckpointArch(), 1, base.WriteCheckpointOptions{FP16: true, EMA: true}); err != nil {
		t.Fatal(err)
	}
}

// makePrereqs is what a make target depends on, read from the Makefile.
func makePrereqs(t *testing.T, makefile, target string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:([^=\n]*)$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("the Makefile has no target %s", target)
	}
	return strings.Fields(m[1])
}

// shorten applies readmeShortening to one `bin/face0 ...` command.
func shorten(t *testing.T, cmd, readme string) string {
	t.Helper()
	f := strings.Fields(cmd)
	if len(f) < 2 {
		return cmd
	}
	s, ok := readmeShortening[f[1]]
	if !ok {
		return cmd
	}
	for flag, v := range s.replace {
		i := slices.Index(f, flag)
		if i < 0 || i+1 >= len(f) {
			t.Fatalf("the README's %q no longer has %s; update readmeShortening", cmd, flag)
		}
		f[i+1] = v
	}
	for i := 0; i < len(s.add); i += 2 {
		f = append(f, s.add[i], s.add[i+1])
	}
	return strings.Join(f, " ")
}

// TestReadme runs the README's command blocks in order, as a newcomer
// would on a fresh clone: a copy of the tracked tree (links to the
// repository's files, without bin/, out/ or ../shared beside it), an empty
// HOME whose ~/.cache/face0 holds what scripts/setup.sh installs, face0's
// folders at their defaults inside that HOME. make runs in the repository
// with BIN pointing into the copy (so the Go build cache serves it); `make
// serve` is not run (a newcomer may run only `make test` before the other
// blocks, so each must bring what it needs), `make test` (which runs this
// test) is replaced by its asset set-up, `make setup`; slow commands are
// shortened with flags the README shows. Every command must succeed, and nothing may be left that git
// would list as untracked.
func TestReadme(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipping: make is not installed")
	}
	if err := ort.Init(); errors.Is(err, ort.ErrNoLibrary) {
		t.Skipf("skipping: %v (make setup installs it)", err)
	}
	if _, err := assets.FaceAPIDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	root, _ := filepath.Abs("../..")
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, _ := os.ReadFile(filepath.Join(root, "go.mod"))
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod); m == nil || !strings.Contains(readme, "Go "+string(m[1])) {
		t.Errorf("the README does not name go.mod's Go version (%s)", m[1])
	}
	for _, s := range readmeShortening {
		for flag := range s.replace {
			if !strings.Contains(readme, flag) {
				t.Errorf("the test shortens %s, which the README does not show", flag)
			}
		}
		for i := 0; i < len(s.add); i += 2 {
			if !strings.Contains(readme, s.add[i]) {
				t.Errorf("the test adds %s, which the README does not show", s.add[i])
			}
		}
	}

	// The fresh clone: links to the tracked top-level entries.
	tmp := t.TempDir()
	clone := filepath.Join(tmp, "face0")
	home := filepath.Join(tmp, "home")
	ls, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil {
		t.Skipf("skipping: not a git checkout (%v)", err)
	}
	tracked := map[string]bool{}
	for _, f := range strings.Split(strings.TrimSpace(string(ls)), "\n") {
		top, _, _ := strings.Cut(f, "/")
		tracked[top] = true
	}
	for _, d := range []string{clone, filepath.Join(home, ".cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for top := range tracked {
		if err := os.Symlink(filepath.Join(root, top), filepath.Join(clone, top)); err != nil {
			t.Fatal(err)
		}
	}
	// What scripts/setup.sh fetched, where a fresh HOME's set-up finds it.
	if err := os.Symlink(assets.CacheDir(), filepath.Join(home, ".cache", "face0")); err != nil {
		t.Fatal(err)
	}
	statusBefore, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=all").Output()

	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOTOOLCHAIN", "GOPROXY", "GONOSUMDB", "GOPRIVATE", "FACE0_ORT_LIB", "TMPDIR"} {
		v := os.Getenv(k)
		if v == "" && strings.HasPrefix(k, "GO") {
			out, _ := exec.Command("go", "env", k).Output()
			v = strings.TrimSpace(string(out))
		}
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	bin := filepath.Join(clone, "bin", "face0")
	sh := func(dir, line string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		t.Logf("$ %s  (%.1f s)", line, time.Since(start).Seconds())
		if err != nil {
			t.Fatalf("README command failed: %s\n%v\n%s", line, err, out.String())
		}
	}
	for bi, block := range readmeBlocks(t, readme) {
		for _, line := range block {
			if strings.ContainsAny(line, `"'$;&|<>`+"`") {
				t.Fatalf("README block %d: %q uses shell syntax this test does not run; keep README commands plain, or teach the test", bi+1, line)
			}
			f := strings.Fields(line)
			switch {
			case f[0] == "make" && len(f) > 1 && f[1] == "serve":
				// Not run: the server is tested elsewhere, and a newcomer may
				// well run only make test first. So every later block must
				// bring what it needs (make example-plugin); the targets make
				// serve depends on must still exist.
				for _, p := range makePrereqs(t, string(makefile), "serve") {
					if _, err := exec.Command("make", "-C", root, "-n", p).Output(); err != nil {
						t.Fatalf("make serve depends on %s, which make -n refuses: %v", p, err)
					}
				}
			case f[0] == "make" && len(f) > 1 && f[1] == "test":
				sh(root, "make --no-print-directory setup BIN="+bin)
			case f[0] == "make":
				sh(root, "make --no-print-directory "+strings.Join(f[1:], " ")+" BIN="+bin)
			case f[0] == "bin/face0" && len(f) > 3 && f[1] == "models" && f[2] == "import":
				// The user's own checkpoint: a tiny random one in the same
				// single-file layout stands in for it where the README says.
				standInCheckpoint(t, strings.Replace(f[3], "~", home, 1))
				sh(clone, line)
			case f[0] == "bin/face0":
				sh(clone, shorten(t, line, readme))
			default:
				t.Fatalf("README block %d: %q: this test runs make and bin/face0 commands only; teach it, or change the README", bi+1, line)
			}
		}
	}

	// A clean tree: what the commands left in the clone is ignored by git,
	// and the repository itself did not change.
	entries, err := os.ReadDir(clone)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if tracked[e.Name()] {
			continue
		}
		if err := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", e.Name()+"/").Run(); err != nil {
			if err := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", e.Name()).Run(); err != nil {
				t.Errorf("following the README left %s, which git would list as untracked", e.Name())
			}
		}
	}
	statusAfter, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=all").Output()
	if !bytes.Equal(statusBefore, statusAfter) {
		t.Errorf("following the README changed the repository:\nbefore:\n%s\nafter:\n%s", statusBefore, statusAfter)
	}
}
