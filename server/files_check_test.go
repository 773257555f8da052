package server

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUploadChecksBeforeActing: an upload into a subfolder that a planted
// symlink leads out of the input folder is refused before anything is
// created out there.
func TestUploadChecksBeforeActing(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(home, "input", "out")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"out", "out/new/deeper", "faces/../out/x"} {
		code, out := upload{fileName: "a.png", data: encoded(t, "png"), fields: map[string]string{"subfolder": sub}}.send(t, ts.url)
		if code != 403 && code != 400 {
			t.Errorf("subfolder %q: %d %v, want 403", sub, code, out)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the upload created %v outside the input folder", entries[0].Name())
	}
}

// TestLongNames: names over the file system's 255 bytes are a 400 that says
// so, not a 500 from the file system.
func TestLongNames(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	long := strings.Repeat("n", 256)
	wide := strings.Repeat("\U0001F600", 70) // 280 bytes in 70 characters
	for _, tc := range []struct {
		name string
		u    upload
	}{
		{"long subfolder", upload{fileName: "a.png", fields: map[string]string{"subfolder": "ok/" + long}}},
		{"long file name", upload{fileName: long + ".png"}},
		{"wide file name", upload{fileName: wide + ".png"}},
	} {
		tc.u.data = encoded(t, "png")
		code, out := tc.u.send(t, ts.url)
		if msg := errMessage(out); code != 400 || !strings.Contains(msg, "255") {
			t.Errorf("%s: %d %q, want 400 naming the 255-byte limit", tc.name, code, msg)
		}
	}
	// Just under the limit is fine, and a dedupe suffix still fits.
	name := strings.Repeat("m", 251) + ".png"
	for i := range 2 {
		data := append(encoded(t, "png"), byte(i)) // different bytes: a second name
		code, out := upload{fileName: name, data: data}.send(t, ts.url)
		if code != 200 || len(out["name"].(string)) > 255 {
			t.Fatalf("255-byte name, upload %d: %d %v", i, code, out)
		}
	}
	for _, q := range []url.Values{
		{"filename": {long + ".png"}},
		{"filename": {"a.png"}, "subfolder": {long}},
		{"filename": {wide}, "type": {"input"}},
	} {
		code, out := call(t, "GET", ts.url+"/view?"+q.Encode(), nil)
		if msg := errMessage(out); code != 400 || !strings.Contains(msg, "255") {
			t.Errorf("view %v: %d %q, want 400 naming the limit", q, code, msg)
		}
	}
}

func errMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// TestViewRefusesNonRegularFiles: a FIFO in the output folder is refused
// at once; opening it for reading would wait for a writer for ever.
func TestViewRefusesNonRegularFiles(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	fifo := filepath.Join(home, "output", "pipe.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	// Should the server open it anyway, a writer lets that open return so
	// that the test ends.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	client := &http.Client{Timeout: 30 * time.Second} // a hang guard
	resp, err := client.Get(ts.url + "/view?filename=pipe.png")
	if err != nil {
		t.Fatalf("GET /view of a FIFO: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("GET /view of a FIFO: %d, want a 4xx", resp.StatusCode)
	}
}
