package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/internal/testenv"
)

// TestScaleOutEmbeddedTLS: with --nats-tls-cert and --nats-tls-key, the
// embedded NATS server speaks TLS only; a worker that does not trust the
// certificate is refused with what to pass, and one given it with --tls-ca
// joins and runs the node that needs its model.
func TestScaleOutEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	cert, key := testenv.SelfSigned(t, dir, "nats", "127.0.0.1")
	const token = "tls-test-token"

	c, url := startEmbedded(t, dir, []string{"--token", token, "--tls-ca", cert}, "--nats-token", token, "--nats-tls-cert", cert, "--nats-tls-key", key)
	if !strings.HasPrefix(url, "tls://") {
		t.Errorf("face0 serve gives workers %s, want a tls:// URL", url)
	}

	cmd := testenv.DieWithTest(exec.Command(face0Bin, "worker", "--nats", "nats://"+strings.TrimPrefix(url, "tls://"), "--token", token, "--home", t.TempDir(), "--packs", "none"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("a worker without --tls-ca ended with %v\n%s", err, out)
	}
	if want := "a certificate this process does not trust: pass --tls-ca FILE (face0 serve: --nats-tls-ca FILE)"; !strings.Contains(string(out), want) || strings.Contains(string(out), "goroutine") {
		t.Errorf("the worker without --tls-ca said %q, want %q and no stack trace", out, want)
	}

	c.startWorker("secure", url, "m7")
	c.waitJoined("secure")
	id := c.submit(`{"version":1,"nodes":[{"id":"m","type":"ModelText","inputs":{"model":"m7"}},
		{"id":"save","type":"WriteString","inputs":{"text":{"node":"m","output":"STRING"},"prefix":"tls"}}]}`)
	if got := c.outputFiles(c.history(id), "save"); len(got) != 1 || got[0] != "weights of m7" {
		t.Errorf("save wrote %v, want the model only the worker has", got)
	}
	if jobs := c.workers["secure"].jobs(); len(jobs) != 1 || jobs[0] != "m" {
		t.Errorf("the worker took %v, want [m]", jobs)
	}
}
