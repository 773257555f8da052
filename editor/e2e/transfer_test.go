package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/editor"
)

// TestEditorTransfer measures what loading the editor moves over the wire,
// first visit and reload, from face0 serve and, as the baseline in the same
// run, from a plain file server over the same files (what face0 did before:
// no compression, no caching headers, no ETag).
func TestEditorTransfer(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	const token = "transfer-token"
	srv := startServerIn(t, token, t.TempDir(), false)
	// The baseline: the editor's files from http.FileServerFS, the API
	// passed through to the same server.
	target, _ := url.Parse(srv.base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	files := http.FileServerFS(editor.FS())
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/assets/") {
			files.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer plain.Close()
	var raw int
	_ = fs.WalkDir(editor.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (p == "index.html" || strings.HasPrefix(p, "assets/")) {
			b, _ := fs.ReadFile(editor.FS(), p)
			raw += len(b)
		}
		return nil
	})

	// measure loads the editor, then reloads it; it returns the bytes of the
	// editor's files and of /object_info (the largest API answer) on the
	// wire, headers included, each time.
	type load struct{ files, objectInfo, all float64 }
	measure := func(base string) (first, reload load) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b := startBrowser(t, chromium, 1280, 800)
		p := b.newPage(ctx)
		sum := func(what string) load {
			var l load
			var api []string
			for _, tr := range p.transfers() {
				u, err := url.Parse(tr.URL)
				if err != nil {
					continue
				}
				l.all += tr.Bytes
				switch {
				case u.Path == "/" || strings.HasPrefix(u.Path, "/assets/"):
					l.files += tr.Bytes
				case u.Path == "/object_info":
					l.objectInfo += tr.Bytes
					fallthrough
				default:
					api = append(api, fmt.Sprintf("%s %.0f", u.Path, tr.Bytes))
				}
			}
			t.Logf("%s, %s: %.0f bytes in all; editor files %.0f; the API: %s", base, what, l.all, l.files, strings.Join(api, ", "))
			return l
		}
		p.recordNetwork()
		p.navigate(base + "/?token=" + token)
		p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6`, 20*time.Second, "the editor")
		first = sum("first visit")
		p.recordNetwork()
		p.do("Page.reload", map[string]any{})
		p.waitFor(`document.readyState === "complete" && document.querySelectorAll(".react-flow__node").length === 6`, 20*time.Second, "the editor after a reload")
		reload = sum("reload")
		return first, reload
	}
	oldFirst, oldReload := measure(plain.URL)
	newFirst, newReload := measure(srv.base)
	t.Logf("editor files (index.html and assets, %d bytes raw) on the wire, headers included: first visit %.0f bytes (plain file server %.0f, ratio %.2f), reload %.0f bytes (plain file server %.0f, ratio %.3f); everything a reload moves from face0 serve: %.0f bytes",
		raw, newFirst.files, oldFirst.files, newFirst.files/oldFirst.files, newReload.files, oldReload.files, newReload.files/oldReload.files, newReload.all)
	if newFirst.files > 0.45*oldFirst.files {
		t.Errorf("the first visit moves %.0f bytes, %.0f%% of the plain server's %.0f: not compressed?", newFirst.files, 100*newFirst.files/oldFirst.files, oldFirst.files)
	}
	if newReload.files > 2048 {
		t.Errorf("a reload moves %.0f bytes of editor files; a 304 for index.html and cached assets should be a few hundred", newReload.files)
	}
	if newFirst.objectInfo == 0 || newReload.objectInfo == 0 {
		t.Fatalf("the editor did not fetch /object_info (first visit %.0f bytes, reload %.0f)", newFirst.objectInfo, newReload.objectInfo)
	}
	if newReload.objectInfo > 1024 {
		t.Errorf("a reload moves %.0f bytes of /object_info (first visit %.0f); the same catalog should be a 304", newReload.objectInfo, newFirst.objectInfo)
	}
}
