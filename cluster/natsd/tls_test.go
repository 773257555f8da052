package natsd_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/cluster/natsd"
	"github.com/face0/face0/internal/testenv"
)

// With a certificate, the embedded server speaks only TLS: workers that
// trust it connect; the others are told what to pass, never connected in
// the clear. The serving process reaches its own server whatever names the
// certificate lists.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := testenv.SelfSigned(t, dir, "server", "127.0.0.1")
	other, _ := testenv.SelfSigned(t, dir, "other", "127.0.0.1")
	elsewhere, elsewhereKey := testenv.SelfSigned(t, dir, "elsewhere", "nats.example.invalid")

	srv, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "a"), Token: "s3cret", TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if !strings.HasPrefix(srv.URL(), "tls://") {
		t.Errorf("the URL of a TLS server is %s, want tls://", srv.URL())
	}
	self, err := cluster.Connect(srv.URL(), cluster.Auth{}, "self", srv.Options()...)
	if err != nil {
		t.Fatalf("the serving process to its own TLS server: %v", err)
	}
	self.Close()

	plainURL := "nats://" + strings.TrimPrefix(srv.URL(), "tls://")
	for _, tc := range []struct {
		name string
		url  string
		auth cluster.Auth
		want string // "" connects
	}{
		{"trusted", srv.URL(), cluster.Auth{Token: "s3cret", TLSCA: cert}, ""},
		{"trusted, nats:// URL", plainURL, cluster.Auth{Token: "s3cret", TLSCA: cert}, ""},
		{"no CA", plainURL, cluster.Auth{Token: "s3cret"}, "a certificate this process does not trust: pass --tls-ca FILE (face0 serve: --nats-tls-ca FILE)"},
		{"another CA", srv.URL(), cluster.Auth{Token: "s3cret", TLSCA: other}, "--tls-ca " + other + " holds neither the server's certificate nor the CA that signed it"},
		{"not PEM", srv.URL(), cluster.Auth{Token: "s3cret", TLSCA: filepath.Join(dir, "a")}, "TLS CA file"},
		{"trusted, wrong token", srv.URL(), cluster.Auth{Token: "wrong", TLSCA: cert}, "refused the credentials"},
	} {
		nc, err := cluster.Connect(tc.url, tc.auth, "worker")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "":
			if st, err := nc.TLSConnectionState(); err != nil || !st.HandshakeComplete {
				t.Errorf("%s: connected without TLS (%v)", tc.name, err)
			}
			nc.Close()
		case err == nil:
			nc.Close()
			t.Errorf("%s: connected; want an error saying %q", tc.name, tc.want)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %v; want it to say %q", tc.name, err, tc.want)
		}
	}

	// A server without TLS, asked for it.
	plain, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "b"), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	if _, err := cluster.Connect(plain.URL(), cluster.Auth{Token: "s3cret", TLSCA: cert}, "worker"); err == nil || !strings.Contains(err.Error(), "does not use TLS, and --tls-ca asks for it") {
		t.Errorf("TLS asked of a plain server: %v", err)
	}

	// A certificate for another name: trusted, but not for this address.
	named, err := natsd.Start(natsd.Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "c"), Token: "s3cret", TLSCert: elsewhere, TLSKey: elsewhereKey})
	if err != nil {
		t.Fatal(err)
	}
	defer named.Shutdown()
	if nc, err := cluster.Connect(named.URL(), cluster.Auth{}, "self", named.Options()...); err != nil {
		t.Errorf("the serving process to its own server with a certificate for another name: %v", err)
	} else {
		nc.Close()
	}
	if _, err := cluster.Connect(named.URL(), cluster.Auth{Token: "s3cret", TLSCA: elsewhere}, "worker"); err == nil || !strings.Contains(err.Error(), "has a certificate for other names") {
		t.Errorf("a certificate for another name: %v", err)
	}

	// Start refuses half a configuration, and a key of another certificate.
	for _, c := range []natsd.Config{
		{TLSCert: cert},
		{TLSCert: cert, TLSKey: elsewhereKey},
	} {
		c.Listen, c.Dir, c.Token = "127.0.0.1:0", filepath.Join(dir, "d"), "s3cret"
		if s, err := natsd.Start(c); err == nil {
			s.Shutdown()
			t.Errorf("Start(%+v) succeeded", c)
		} else if !strings.Contains(err.Error(), "TLS") {
			t.Errorf("Start(%+v): %v; want it to name TLS", c, err)
		}
	}
}

// Listening beyond this machine without TLS works, with a warning.
func TestNoTLSWarning(t *testing.T) {
	for _, tc := range []struct {
		listen string
		tls    bool
		warn   bool
	}{
		{"0.0.0.0:0", false, true},
		{"0.0.0.0:0", true, false},
		{"127.0.0.1:0", false, false},
	} {
		dir := t.TempDir()
		c := natsd.Config{Listen: tc.listen, Dir: filepath.Join(dir, "n"), Token: "s3cret", Log: &testenv.Buffer{}}
		if tc.tls {
			c.TLSCert, c.TLSKey = testenv.SelfSigned(t, dir, "server", "127.0.0.1")
		}
		srv, err := natsd.Start(c)
		if err != nil {
			t.Fatal(err)
		}
		srv.Shutdown()
		warned := strings.Contains(c.Log.(*testenv.Buffer).String(), "without TLS: the token and the tensors cross the network unencrypted")
		if warned != tc.warn {
			t.Errorf("listen %s, TLS %v: warned %v, want %v:\n%s", tc.listen, tc.tls, warned, tc.warn, c.Log.(*testenv.Buffer).String())
		}
	}
}
