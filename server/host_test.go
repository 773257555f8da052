package server

import (
	"bytes"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"
)

// hostRequest sends a request addressed (Host header) to host, from a page
// of origin, and returns the status code.
func hostRequest(t testing.TB, base, method, path, host, origin string, body []byte, ctype string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// hostRoutes is every route, with a body that gets past its own checks.
func hostRoutes(t testing.TB) []struct {
	method, path, ctype string
	body                []byte
} {
	var up bytes.Buffer
	mw := multipart.NewWriter(&up)
	fw, _ := mw.CreateFormFile("image", "rebound.png")
	fw.Write(encoded(t, "png"))
	mw.Close()
	prompt := []byte(`{"prompt": {"version": 1, "nodes": [{"id": "s", "type": "Slow", "inputs": {"steps": 1, "delay_ms": 0}}]}}`)
	return []struct {
		method, path, ctype string
		body                []byte
	}{
		{"GET", "/prompt", "", nil},
		{"POST", "/prompt", "application/json", prompt},
		{"POST", "/api/prompt", "application/json", prompt},
		{"GET", "/queue", "", nil},
		{"POST", "/queue", "application/json", []byte(`{"clear": true}`)},
		{"GET", "/history", "", nil},
		{"GET", "/history/x", "", nil},
		{"POST", "/history", "application/json", []byte(`{"clear": true}`)},
		{"GET", "/object_info", "", nil},
		{"GET", "/object_info/Slow", "", nil},
		{"GET", "/view?filename=smiley.png&type=input", "", nil},
		{"POST", "/upload/image", mw.FormDataContentType(), up.Bytes()},
		{"POST", "/interrupt", "application/json", []byte(`{}`)},
		{"GET", "/system_stats", "", nil},
		{"GET", "/face0/types", "", nil},
		{"GET", "/face0/workflow/default", "", nil},
		{"GET", "/", "", nil},
	}
}

// TestDNSRebinding: without a token, a page on another site whose name has
// been made to resolve to 127.0.0.1 addresses the server by that name (Host)
// and is same-origin with it (Origin); every route must refuse it, and accept
// the names that are this machine's.
func TestDNSRebinding(t *testing.T) {
	ts := startServer(t, newHome(t), WithPaused(), WithAllowedHosts("face0.lan", "Studio.Local:8188"))
	port := ts.http.Listener.Addr().(*net.TCPAddr).Port
	at := func(name string) string { return net.JoinHostPort(name, strconv.Itoa(port)) }
	for _, r := range hostRoutes(t) {
		for _, host := range []string{at("evil.example"), "evil.example", at("localhost.evil.example"), at("127.0.0.1.nip.io")} {
			if code := hostRequest(t, ts.url, r.method, r.path, host, "http://"+host, r.body, r.ctype); code != http.StatusForbidden {
				t.Errorf("%s %s with Host %s: %d, want 403", r.method, r.path, host, code)
			}
		}
		for _, host := range []string{at("localhost"), at("127.0.0.1"), at("::1"), "localhost", at("app.localhost"), at("face0.lan"), at("FACE0.LAN"), at("studio.local"), at("192.168.1.7")} {
			if code := hostRequest(t, ts.url, r.method, r.path, host, "http://"+host, r.body, r.ctype); code == http.StatusForbidden {
				t.Errorf("%s %s with Host %s: 403, want it served", r.method, r.path, host)
			}
		}
	}
	dial := func(host string) (*http.Response, error) {
		h := http.Header{"Host": {host}, "Origin": {"http://" + host}}
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts.url, "?clientId=x"), h)
		if c != nil {
			c.Close()
		}
		return resp, err
	}
	if resp, err := dial(at("evil.example")); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("websocket with Host evil.example: %v %v, want 403", err, resp)
	}
	if _, err := dial(at("localhost")); err != nil {
		t.Errorf("websocket with Host localhost: %v", err)
	}
}

// TestTokenKeepsHostsOpen: with a token, the Host is not checked (the token
// is what a rebinding page does not have), as before.
func TestTokenKeepsHostsOpen(t *testing.T) {
	ts := startServer(t, newHome(t), WithPaused(), WithToken("s3cret"))
	for _, r := range hostRoutes(t) {
		if code := hostRequest(t, ts.url, r.method, r.path, "face0.example.org", "", r.body, r.ctype, "Authorization", "Bearer s3cret"); code == http.StatusForbidden || code == http.StatusUnauthorized {
			t.Errorf("%s %s with a token and Host face0.example.org: %d", r.method, r.path, code)
		}
		if code := hostRequest(t, ts.url, r.method, r.path, "evil.example", "http://evil.example", r.body, r.ctype); code != http.StatusUnauthorized {
			t.Errorf("%s %s without the token: %d, want 401", r.method, r.path, code)
		}
	}
}

// TestServeAllowHost: face0 serve's --allow-host and --listen names are
// accepted, other names refused.
func TestServeAllowHost(t *testing.T) {
	p := startProc(t, newHome(t), "--allow-host", "face0.lan")
	if p.url == "" {
		t.Fatalf("no server:\n%s", p.log())
	}
	for host, want := range map[string]int{"face0.lan": 200, "localhost": 200, "evil.example": 403} {
		if code := hostRequest(t, p.url, "GET", "/queue", host, "", nil, ""); code != want {
			t.Errorf("Host %s: %d, want %d", host, code, want)
		}
	}
	p.stop(t)
}
