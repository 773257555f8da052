package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/face0/face0/engine/workflow"
)

// savedPaths are the files a run printed ("node: path" lines among the JSON
// events), by node id.
func savedPaths(stdout string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if line == "" || strings.HasPrefix(line, "{") {
			continue
		}
		id, path, ok := strings.Cut(line, ": ")
		if ok {
			out[id] = append(out[id], path)
		}
	}
	return out
}

func executing(t *testing.T, stdout string) []string {
	var ran []string
	for _, e := range eventsOf(t, stdout, "executing") {
		ran = append(ran, e["node"].(string))
	}
	slices.Sort(ran)
	return ran
}

// checkSaved fails unless every printed path is a PNG under out that carries
// the workflow, and both save nodes printed one.
func checkSaved(t *testing.T, stdout, out string) map[string][]string {
	t.Helper()
	saved := savedPaths(stdout)
	if len(saved["save_blur"]) != 1 || len(saved["save_invert"]) != 1 {
		t.Fatalf("printed outputs %v, want one per save node", saved)
	}
	for id, paths := range saved {
		for _, p := range paths {
			if !strings.HasPrefix(p, out+string(filepath.Separator)) {
				t.Errorf("%s: printed %s, outside the output folder %s", id, p, out)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: printed %s, which is not there: %v", id, p, err)
				continue
			}
			if w, _, err := workflow.FromPNG(data); err != nil || w.Node("blur") == nil {
				t.Errorf("%s: %s does not carry its workflow: %v", id, p, err)
			}
		}
	}
	return saved
}

func pngsIn(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "imagefx", "*.png"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSaveImageFollowsEveryRun: a SaveImage whose result is in the cache
// still leaves its files where this run asked (issue 12, item 1), through the
// real CLI, the built-in image pack and the example plugin as processes.
func TestSaveImageFollowsEveryRun(t *testing.T) {
	c := newCLI(t)
	a, b := c.out, t.TempDir()
	stdout, stderr, code := c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	first := checkSaved(t, stdout, a)

	// Another output folder: the images are cached, the files are written
	// there, not merely reported from the first run.
	c.out = b
	stdout, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("--out B: exit %d\n%s", code, stderr)
	}
	checkSaved(t, stdout, b)
	if got := executing(t, stdout); !slices.Equal(got, []string{"save_blur", "save_invert"}) {
		t.Errorf("--out B executed %v, want only the save nodes (the rest from the cache)", got)
	}
	if n := len(pngsIn(t, b)); n != 2 {
		t.Errorf("B holds %d images, want 2", n)
	}

	// Back to A with everything in place: all from the cache, no new files,
	// the same files reported.
	c.out = a
	stdout, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("again into A: exit %d\n%s", code, stderr)
	}
	if got := executing(t, stdout); len(got) != 0 {
		t.Errorf("an unchanged run with its files in place executed %v", got)
	}
	if again := checkSaved(t, stdout, a); !equalPaths(again, first) {
		t.Errorf("unchanged run reported %v, first run %v", again, first)
	}
	if n := len(pngsIn(t, a)); n != 2 {
		t.Errorf("A holds %d images after an unchanged run, want 2", n)
	}

	// The output folder deleted: the files come back.
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("after deleting the output folder: exit %d\n%s", code, stderr)
	}
	checkSaved(t, stdout, a)
	if n := len(pngsIn(t, a)); n != 2 {
		t.Errorf("A holds %d images after the re-run, want 2", n)
	}

	// A saved file overwritten by the user: kept as the user left it, and the
	// image saved again beside it.
	saved := savedPaths(stdout)["save_blur"][0]
	if err := os.WriteFile(saved, []byte("edited by the user"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = c.run(t, "run", "examples/workflows/imagefx.json", "--json")
	if code != 0 {
		t.Fatalf("after editing a saved file: exit %d\n%s", code, stderr)
	}
	again := checkSaved(t, stdout, a)
	if again["save_blur"][0] == saved {
		t.Errorf("reported the edited file %s as the saved image", saved)
	}
	if data, _ := os.ReadFile(saved); !bytes.Equal(data, []byte("edited by the user")) {
		t.Errorf("the user's edited file was replaced")
	}

	// A saved image is still a runnable workflow, and running it in place
	// writes nothing new.
	before := len(pngsIn(t, a))
	stdout, stderr, code = c.run(t, "run", again["save_invert"][0], "--json")
	if code != 0 {
		t.Fatalf("running a saved PNG: exit %d\n%s", code, stderr)
	}
	checkSaved(t, stdout, a)
	if n := len(pngsIn(t, a)); n != before {
		t.Errorf("running a saved PNG in place: %d images, had %d", n, before)
	}
}

func equalPaths(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestThirdPartySaveFollowsEveryRun: the same rule for a third-party node
// declared with sdk.SideEffects (the example plugin's SaveJPEG, a real
// plugin process found in the plugins folder).
func TestThirdPartySaveFollowsEveryRun(t *testing.T) {
	c := newCLI(t)
	wf := filepath.Join(t.TempDir(), "jpeg.json")
	doc := `{"version": 1, "nodes": [
		{"id": "load", "type": "LoadImage", "inputs": {"image": "smiley.png"}},
		{"id": "jpeg", "type": "SaveJPEG", "inputs": {"images": {"node": "load", "output": "IMAGE"}, "filename_prefix": "jpeg/smiley", "quality": 80}}]}`
	if err := os.WriteFile(wf, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(out string) (string, []string) {
		t.Helper()
		c.out = out
		stdout, stderr, code := c.run(t, "run", wf, "--json")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		paths := savedPaths(stdout)["jpeg"]
		if len(paths) != 1 {
			t.Fatalf("printed %v", savedPaths(stdout))
		}
		data, err := os.ReadFile(paths[0])
		if err != nil || !bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}) || !strings.HasPrefix(paths[0], out+string(filepath.Separator)) {
			t.Errorf("printed %s: %d bytes, %v", paths[0], len(data), err)
		}
		return stdout, paths
	}
	a, b := t.TempDir(), t.TempDir()
	_, first := run(a)
	stdout, _ := run(b)
	if got := executing(t, stdout); !slices.Equal(got, []string{"jpeg"}) {
		t.Errorf("into B executed %v, want [jpeg]", got)
	}
	stdout, again := run(a)
	if got := executing(t, stdout); len(got) != 0 || again[0] != first[0] {
		t.Errorf("unchanged into A: executed %v, reported %v (first %v)", got, again, first)
	}
	if err := os.RemoveAll(filepath.Join(a, "jpeg")); err != nil {
		t.Fatal(err)
	}
	stdout, _ = run(a)
	if got := executing(t, stdout); !slices.Equal(got, []string{"jpeg"}) {
		t.Errorf("after deleting its folder executed %v, want [jpeg]", got)
	}
}
