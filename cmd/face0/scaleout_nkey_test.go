package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/face0/face0/internal/testenv"
)

// TestScaleOutEmbeddedNKeys: face0 serve --nats embedded starts NATS in its
// own process, storing JetStream's files under its home, and lets in only
// the workers whose NKeys its --nats-nkeys file lists (keys made by face0
// worker --new-nkey); a worker with another key, or none, is refused with a
// message that says what to check; the listed worker runs the node that
// needs its model.
func TestScaleOutEmbeddedNKeys(t *testing.T) {
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	newKey := func(name string) (pub, file string) {
		t.Helper()
		file = filepath.Join(dir, name+".nk")
		cmd := exec.Command(face0Bin, "worker", "--new-nkey", file)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("face0 worker --new-nkey: %v", err)
		}
		pub = strings.TrimSpace(string(out))
		if !regexp.MustCompile(`^U[A-Z2-7]{55}$`).MatchString(pub) {
			t.Fatalf("face0 worker --new-nkey printed %q, not a public user key", pub)
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the seed file: %v, %v; want mode 0600", fi, err)
		}
		return pub, file
	}
	goodPub, goodSeed := newKey("good")
	_, badSeed := newKey("bad")
	keys := filepath.Join(dir, "workers.keys")
	os.WriteFile(keys, []byte("# the workers allowed\n"+goodPub+"\n"), 0o644)

	c, url := startEmbedded(t, dir, []string{"--nkey", goodSeed}, "--nats-nkeys", keys)
	if _, err := os.Stat(filepath.Join(c.home, "nats", "jetstream")); err != nil {
		t.Errorf("the embedded NATS server keeps no JetStream files under the home: %v", err)
	}

	for _, tc := range []struct {
		name  string
		creds []string
		want  string
	}{
		{"other-key", []string{"--nkey", badSeed}, "check the NKey seed (--nkey " + badSeed + "): its public key is not among those the server allows"},
		{"no-credentials", nil, "it needs credentials: pass --token (or $FACE0_NATS_TOKEN) or --nkey SEEDFILE"},
	} {
		cmd := testenv.DieWithTest(exec.Command(face0Bin, append([]string{"worker", "--nats", url, "--home", t.TempDir(), "--packs", "none"}, tc.creds...)...))
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "FACE0_NATS_TOKEN=")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%s: a refused worker ended with %v\n%s", tc.name, err, out)
		}
		if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "goroutine") {
			t.Errorf("%s: the worker said %q, want %q and no stack trace", tc.name, out, tc.want)
		}
	}

	c.startWorker("keyed", url, "m9")
	c.waitJoined("keyed")
	id := c.submit(`{"version":1,"nodes":[{"id":"m","type":"ModelText","inputs":{"model":"m9"}},
		{"id":"save","type":"WriteString","inputs":{"text":{"node":"m","output":"STRING"},"prefix":"nkey"}}]}`)
	if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m9" {
		t.Errorf("save wrote %v, want the model only the worker has", got)
	}
	if jobs := c.workers["keyed"].jobs(); len(jobs) != 1 || jobs[0] != "m" {
		t.Errorf("the worker took %v, want [m]", jobs)
	}
}
