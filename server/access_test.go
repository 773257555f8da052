package server

import (
	"testing"

	"github.com/gorilla/websocket"
)

func TestAuth(t *testing.T) {
	ts := startServer(t, newHome(t), WithToken("s3cret"))
	for _, tc := range []struct {
		name, method, path string
		hdr                []string
		code               int
	}{
		{"no token", "GET", "/queue", nil, 401},
		{"wrong token", "GET", "/queue", []string{"Authorization", "Bearer nope"}, 401},
		{"not bearer", "GET", "/queue", []string{"Authorization", "Basic s3cret"}, 401},
		{"bearer", "GET", "/queue", []string{"Authorization", "Bearer s3cret"}, 200},
		{"query on GET", "GET", "/object_info/Slow?token=s3cret", nil, 200},
		{"wrong query", "GET", "/view?filename=x.png&token=no", nil, 401},
		{"query on POST", "POST", "/queue?token=s3cret", nil, 401},
		{"post no token", "POST", "/prompt", nil, 401},
		{"upload no token", "POST", "/upload/image", nil, 401},
		{"interrupt no token", "POST", "/interrupt", nil, 401},
		{"history no token", "GET", "/history", nil, 401},
		{"editor no token", "GET", "/", nil, 401},
		{"ws no token", "GET", "/ws", nil, 401},
		{"stats no token", "GET", "/system_stats", nil, 401},
		{"cookie", "GET", "/queue", []string{"Cookie", "face0_token=s3cret"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, tc.method, ts.url+tc.path, nil, tc.hdr...)
			if code != tc.code {
				t.Fatalf("%s %s = %d, want %d (%v)", tc.method, tc.path, code, tc.code, out)
			}
		})
	}
	c, _, err := websocket.DefaultDialer.Dial(wsURL(ts.url, "?clientId=x&token=s3cret"), nil)
	if err != nil {
		t.Fatalf("ws with ?token=: %v", err)
	}
	c.Close()
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL(ts.url, "?token=bad"), nil); err == nil || resp.StatusCode != 401 {
		t.Fatalf("ws with a bad token: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8188": true, "localhost:8188": true, "[::1]:8188": true,
		"0.0.0.0:8188": false, ":8188": false, "192.168.1.2:8188": false, "[::]:8188": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
