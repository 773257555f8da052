package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testplugin"
)

var face0Bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "face0-cli-test-")
	if err == nil {
		face0Bin, err = testplugin.Face0(dir)
	}
	if err == nil {
		os.MkdirAll(filepath.Join(dir, "home", "plugins"), 0o755)
		_, err = testplugin.Build(filepath.Join(dir, "home", "plugins"), "./examples/plugins/imagefx", "imagefx")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cli struct {
	home, out string
}

func newCLI(t *testing.T) *cli {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "plugins"), 0o755)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(face0Bin), "home", "plugins", "imagefx"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, "plugins", "imagefx"), data, 0o755)
	return &cli{home: home, out: t.TempDir()}
}

// run runs face0 in the repository root with the test's folders.
func (c *cli) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	return c.raw(t, append(args, "--home", c.home, "--input", filepath.Join(root, "examples", "inputs"), "--out", c.out)...)
}

// raw runs face0 in the repository root with exactly these arguments.
func (c *cli) raw(t *testing.T, full ...string) (stdout, stderr string, code int) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command(face0Bin, full...)
	cmd.Dir = root
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func eventsOf(t *testing.T, stdout, typ string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestRunExampleWorkflow(t *testing.T) {
	c := newCLI(t)
	stdout, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if n := len(eventsOf(t, stdout, "executing")); n != 6 {
		t.Fatalf("first run executed %d nodes, want 6", n)
	}
	pngs, _ := filepath.Glob(filepath.Join(c.out, "imagefx", "*.png"))
	if len(pngs) != 2 {
		t.Fatalf("outputs: %v", pngs)
	}
	data, _ := os.ReadFile(pngs[0])
	w, _, err := workflow.FromPNG(data)
	if err != nil || w.Node("blur") == nil {
		t.Fatalf("saved image does not carry its workflow: %v", err)
	}

	// Unchanged: nothing executes, in a new process.
	stdout, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 || len(eventsOf(t, stdout, "executing")) != 0 {
		t.Fatalf("second run: exit %d, executing %v\n%s", code, eventsOf(t, stdout, "executing"), stderr)
	}
	// One literal changed: that node and its descendants only.
	stdout, _, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json", "--set", "blur.radius=5")
	var ran []string
	for _, e := range eventsOf(t, stdout, "executing") {
		ran = append(ran, e["node"].(string))
	}
	if code != 0 || strings.Join(ran, ",") != "blur,save_blur" {
		t.Fatalf("after --set ran %v", ran)
	}
	// The image itself is a runnable workflow file.
	_, stderr, code = c.run(t, "run", pngs[0], "--plain")
	if code != 0 {
		t.Fatalf("running a saved PNG: exit %d\n%s", code, stderr)
	}
}

func TestRunFailuresExitNonZero(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "examples/workflows/imagefx.json", "--set", "load.image=missing.png"}, `"missing.png" is not valid: must be one of 'smiley.png', 'synthface.png'; upload the image`},
		{[]string{"run", "examples/workflows/imagefx.json", "--set", "load.image=../../go.mod"}, `"../../go.mod" is not valid`},
		{[]string{"run", "examples/workflows/imagefx.json", "--set", "blur.radius=1000"}, "must be at most 64"},
		{[]string{"run", "examples/workflows/imagefx.json", "--set", "nope.x=1"}, `no node in the workflow matches "nope.x"`},
		{[]string{"run", "does-not-exist.json"}, "no such file"},
		{[]string{"run"}, "usage"},
	} {
		_, stderr, code := c.run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want non-zero and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestNodesList(t *testing.T) {
	c := newCLI(t)
	stdout, stderr, code := c.run(t, "nodes", "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	// A fresh home (no models yet) must not lose nodes to invalid specs.
	if strings.Contains(stderr, "warning") {
		t.Fatalf("face0 nodes warned on a fresh home:\n%s", stderr)
	}
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(stdout), &nodes); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range nodes {
		have[n["type"].(string)] = true
	}
	for _, want := range []string{"LoadImage", "SaveImage", "ImageScale", "Invert", "BoxBlur", "DetectFace", "EmbedFace", "EncodeText", "Face0Sampler", "Decode", "RandomEmbedding", "Interpolate"} {
		if !have[want] {
			t.Errorf("nodes lacks %s", want)
		}
	}
}
