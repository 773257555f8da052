package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
)

func fetch(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// The transport must not ask for gzip itself and hide what was sent.
	res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// The editor's files: hashed assets cached for a year, index.html revalidated
// by its ETag (a 304 without a body), text gzipped for clients that take it.
func TestStaticEditorFiles(t *testing.T) {
	js := strings.Repeat("console.log('face0 editor');\n", 400)
	files := fstest.MapFS{
		"index.html":              {Data: []byte(`<!doctype html><div id="root"></div><script src="./assets/index-Ab12.js"></script>` + strings.Repeat(" ", 600))},
		"assets/index-Ab12.js":    {Data: []byte(js)},
		"assets/logo-Cd34.png":    {Data: []byte("\x89PNG\r\n\x1a\n tiny")},
		"build-stamp.txt":         {Data: []byte("abc\n")},
		"assets/sub/deep-Ef56.js": {Data: []byte("x")},
	}
	ts := startServer(t, newHome(t), WithEditor(files))

	res, body := fetch(t, ts.url+"/assets/index-Ab12.js", "Accept-Encoding", "gzip, br")
	if res.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || res.Header.Get("Content-Encoding") != "gzip" ||
		!strings.Contains(res.Header.Get("Content-Type"), "javascript") || res.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("a hashed asset: %v", res.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != js || len(body)*5 > len(js) {
		t.Errorf("gzip body of %d bytes for %d: not the file, or barely compressed", len(body), len(js))
	}
	if res, body := fetch(t, ts.url+"/assets/index-Ab12.js"); res.Header.Get("Content-Encoding") != "" || string(body) != js {
		t.Errorf("without Accept-Encoding: %v, %d bytes", res.Header, len(body))
	}
	if res, _ := fetch(t, ts.url+"/assets/index-Ab12.js", "Accept-Encoding", "gzip;q=0"); res.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got %q", res.Header.Get("Content-Encoding"))
	}
	if res, _ := fetch(t, ts.url+"/assets/logo-Cd34.png", "Accept-Encoding", "gzip"); res.Header.Get("Content-Encoding") != "" || res.Header.Get("Content-Type") != "image/png" {
		t.Errorf("an image is not gzipped: %v", res.Header)
	}

	res, body = fetch(t, ts.url+"/", "Accept-Encoding", "gzip")
	etag := res.Header.Get("ETag")
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" || etag == "" || len(body) == 0 {
		t.Fatalf("index.html: %d %v", res.StatusCode, res.Header)
	}
	res, body = fetch(t, ts.url+"/", "Accept-Encoding", "gzip", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("index.html revalidated with its ETag: %d, %d bytes; want 304 and none", res.StatusCode, len(body))
	}
	if res, _ := fetch(t, ts.url+"/", "If-None-Match", etag); res.StatusCode != 200 {
		t.Errorf("the gzip copy's ETag matched the plain one: %d", res.StatusCode)
	}
	if res, _ := fetch(t, ts.url+"/assets/nope.js"); res.StatusCode != 404 {
		t.Errorf("a missing asset: %d", res.StatusCode)
	}
	if res, _ := fetch(t, ts.url+"/api/embeddings"); res.StatusCode != 200 {
		t.Errorf("the API under the editor: %d", res.StatusCode)
	}
}

// /object_info, the largest answer the editor fetches on each load, goes
// gzipped to clients that take it and revalidates by its ETag.
func TestObjectInfoGzipAndETag(t *testing.T) {
	ts := startServer(t, newHome(t))
	res, plain := fetch(t, ts.url+"/object_info")
	etag := res.Header.Get("ETag")
	if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "" || etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("plain /object_info: %d %v", res.StatusCode, res.Header)
	}
	res, body := fetch(t, ts.url+"/api/object_info", "Accept-Encoding", "gzip, deflate, br")
	gzTag := res.Header.Get("ETag")
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Vary") != "Accept-Encoding" || gzTag == "" || gzTag == etag {
		t.Fatalf("gzipped /object_info: %v", res.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if !bytes.Equal(unzipped, plain) || len(body)*4 > len(plain) {
		t.Errorf("gzip body of %d bytes for %d: not the same answer, or barely compressed", len(body), len(plain))
	}
	for _, c := range []struct{ enc, tag string }{{"", etag}, {"gzip", gzTag}} {
		res, body := fetch(t, ts.url+"/object_info", "Accept-Encoding", c.enc, "If-None-Match", c.tag)
		if res.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("/object_info revalidated (Accept-Encoding %q): %d, %d bytes; want 304 and none", c.enc, res.StatusCode, len(body))
		}
	}
	if res, _ := fetch(t, ts.url+"/object_info", "If-None-Match", gzTag); res.StatusCode != 200 {
		t.Errorf("the gzip copy's ETag matched the plain answer: %d", res.StatusCode)
	}
}
