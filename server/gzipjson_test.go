package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
)

// The history and the queue carry every prompt's workflow and grow with use:
// they go gzipped to clients that take it, the same answer once unpacked.
func TestHistoryAndQueueGzipped(t *testing.T) {
	ts := startServer(t, newHome(t))
	var id string
	for range 3 {
		id = submit(t, ts.url, map[string]any{"prompt": slowPrompt(1, 0, false)})
		waitHistory(t, ts.url, id)
	}
	for _, path := range []string{"/history", "/api/history?max_items=200", "/history/" + id, "/queue"} {
		res, plain := fetch(t, ts.url+path)
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "" || res.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("GET %s without Accept-Encoding: %d %v", path, res.StatusCode, res.Header)
		}
		res, body := fetch(t, ts.url+path, "Accept-Encoding", "gzip, deflate")
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s with gzip: %d %v", path, res.StatusCode, res.Header)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		unzipped, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(unzipped, plain) {
			t.Errorf("GET %s: the gzipped answer unpacks to %d bytes (%v), not the plain %d", path, len(unzipped), err, len(plain))
		}
		t.Logf("GET %s: %d bytes plain, %d gzipped", path, len(plain), len(body))
	}
	// A refusal keeps its status through the wrapper.
	if res, _ := fetch(t, ts.url+"/history?max_items=x", "Accept-Encoding", "gzip"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad max_items through gzip: %d", res.StatusCode)
	}
}
