package natsd_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/cluster/natsd"
)

// Port 0 picks a free port (to the NATS server itself, 0 means 4222), and
// a port in use is an error at once, not after the start's time limit.
func TestPorts(t *testing.T) {
	dir := t.TempDir()
	a, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "a")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "b")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if a.URL() == b.URL() || strings.HasSuffix(a.URL(), ":4222") {
		t.Errorf("port 0 gave %s and %s", a.URL(), b.URL())
	}
	addr := strings.TrimPrefix(a.URL(), "nats://")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatal(err)
	}
	_, err = natsd.Start(natsd.Config{Listen: addr, Dir: filepath.Join(dir, "c")})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a port in use: %v", err)
	}
}
