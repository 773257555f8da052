package server

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The fuzz targets drive the handlers that parse what a client sends: the
// prompt body, upload names and fields, /view's parameters. Each request goes
// straight to the handler (no net/http recovery in between, so a panic is a
// finding), over a real server with real plugins and real folders. `make
// fuzz` runs them.

// serve sends one request to ts's handler, addressed to 127.0.0.1.
func serve(ts *testServer, req *http.Request) *httptest.ResponseRecorder {
	req.Host = "127.0.0.1"
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	return rec
}

// apiError checks a non-200 answer is ComfyUI's error shape with a message.
func apiError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	var out struct {
		Error struct{ Type, Message string } `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Error.Type == "" || out.Error.Message == "" {
		t.Fatalf("%d answer is not an error with a message: %.300s", rec.Code, rec.Body.Bytes())
	}
}

func FuzzPrompt(f *testing.F) {
	ts := startServer(f, newHome(f), WithPaused())
	ts.store.db.NoSync = true // what is queued here need not survive a crash
	for _, seed := range []string{
		`{"prompt": ` + comfyPrompt + `}`,
		`{"prompt": {"version": 1, "nodes": [{"id": "s", "type": "Slow", "inputs": {"steps": 2, "delay_ms": 1}}]}, "client_id": "c1"}`,
		`{"prompt": {"1": {"class_type": "Slow", "inputs": {"steps": 1}}}, "prompt_id": "my-id.1", "number": 3.5, "front": true}`,
		`{"prompt": {"1": {"class_type": "Slow", "inputs": {"steps": 1}}}, "partial_execution_targets": ["1"], "extra_data": {"client_id": "x"}}`,
		`{"prompt": {"1": {"class_type": "Slow", "inputs": {"steps": "many"}}}}`,
		`{"prompt": {"1": {"class_type": "BoxBlur", "inputs": {"image": ["2", 0]}}}}`,
		`{"prompt": {"version": 1, "nodes": [{"id": "a", "type": "Slow"}], "links": [{"from": "a"}]}}`,
		`{"prompt": null}`, `{"prompt": []}`, `{"prompt": "x"}`, `{}`, ``, `{`, `[1]`, `{"prompt_id": "../../x", "prompt": {}}`,
		`{"prompt": {"1": {"class_type": "Slow", "inputs": {}}}, "number": 1e309}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(ts, httptest.NewRequest("POST", "/prompt", bytes.NewReader(body)))
		switch rec.Code {
		case 200:
			var out struct {
				ID string `json:"prompt_id"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !promptIDRE.MatchString(out.ID) {
				t.Fatalf("200 without a valid prompt_id: %s", rec.Body.Bytes())
			}
			ts.mu.Lock()
			queued := false
			for _, p := range ts.pending {
				queued = queued || p.ID == out.ID
			}
			ts.mu.Unlock()
			if !queued {
				t.Fatalf("prompt %s accepted but not in the queue", out.ID)
			}
			// Keep the queue short: a fuzzing run accepts many prompts.
			del, _ := json.Marshal(map[string]any{"delete": []string{out.ID}})
			if rec := serve(ts, httptest.NewRequest("POST", "/queue", bytes.NewReader(del))); rec.Code != 200 || !strings.Contains(rec.Body.String(), out.ID) {
				t.Fatalf("POST /queue delete %s: %d %s", out.ID, rec.Code, rec.Body.Bytes())
			}
		case 400, 413:
			apiError(t, rec)
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.Bytes())
		}
	})
}

// uploadHome is a HOME whose input folder has a symlink leading out
// (input/link -> outside), a file where a folder might be asked for
// (input/smiley.png) and a FIFO.
func uploadHome(f *testing.F) (home, outside string) {
	home = newHome(f)
	outside = filepath.Join(home, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(home, "input", "link")); err != nil {
		f.Fatal(err)
	}
	_ = syscall.Mkfifo(filepath.Join(home, "input", "pipe.png"), 0o644)
	return home, outside
}

func FuzzUploadName(f *testing.F) {
	home, outside := uploadHome(f)
	ts := startServer(f, home)
	img := encoded(f, "png")
	for _, s := range [][4]string{
		{"face.png", "", "", ""},
		{"face.png", "faces/a", "input", "true"},
		{"../../escape.png", "", "", ""},
		{`..\..\win.png`, "", "temp", "1"},
		{"pipe.png", "", "", ""},
		{"x.png", "link/new", "", ""},
		{"x.png", "smiley.png/x", "", ""},
		{"x.png", "a/../../x", "", ""},
		{"x.png", "/abs", "output", ""},
		{strings.Repeat("n", 300) + ".png", "", "", ""},
		{strings.Repeat("\U0001F600", 63) + ".html", "", "", ""},
		{"a.png", strings.Repeat("d", 256), "", ""},
		{".hidden", "", "", "false"},
		{"a\x00b.png", "s\x00", "models", ""},
		{"", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, sub, kind, overwrite string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for k, v := range map[string]string{"subfolder": sub, "type": kind, "overwrite": overwrite} {
			if v != "" {
				_ = mw.WriteField(k, v)
			}
		}
		fw, err := mw.CreateFormFile("image", name)
		if err != nil {
			t.Skip()
		}
		_, _ = fw.Write(img)
		_ = mw.Close()
		req := httptest.NewRequest("POST", "/upload/image", &b)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		rec := serve(ts, req)
		if entries, _ := os.ReadDir(outside); len(entries) > 0 {
			t.Fatalf("upload (%q, %q) created %s outside the input folder", name, sub, entries[0].Name())
		}
		switch rec.Code {
		case 200:
		case 400, 403, 409, 413:
			apiError(t, rec)
			return
		default:
			t.Fatalf("status %d for name %q subfolder %q type %q: %s", rec.Code, name, sub, kind, rec.Body.Bytes())
		}
		var out struct{ Name, Subfolder, Type string }
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out.Name == "" || strings.ContainsAny(out.Name, "/\\\x00") || strings.HasPrefix(out.Name, ".") || len(out.Name) > maxNameBytes {
			t.Fatalf("saved as %q", out.Name)
		}
		_, rootDir, err := ts.folder(out.Type, "input")
		if err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(rootDir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		got, err := root.ReadFile(filepath.FromSlash(path.Join(out.Subfolder, out.Name)))
		if err != nil || !bytes.Equal(got, img) {
			t.Fatalf("the answer %+v does not lead to the upload: %v", out, err)
		}
	})
}

func FuzzView(f *testing.F) {
	home := newHome(f)
	out := filepath.Join(home, "output")
	files := map[string][]byte{"a.png": encoded(f, "png"), "sub/b.gif": encoded(f, "gif"), "page.html": []byte("<script>x</script>")}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, name)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	secret := []byte("SECRET outside the folders")
	if err := os.WriteFile(filepath.Join(home, "secret.txt"), secret, 0o644); err != nil {
		f.Fatal(err)
	}
	for link, target := range map[string]string{
		"up.png": "../secret.txt", "abs.png": filepath.Join(home, "secret.txt"), "home": "..", "in.png": "sub/b.gif",
	} {
		if err := os.Symlink(target, filepath.Join(out, link)); err != nil {
			f.Fatal(err)
		}
	}
	_ = syscall.Mkfifo(filepath.Join(out, "pipe.png"), 0o644)
	ts := startServer(f, home)
	for _, s := range [][3]string{
		{"a.png", "", ""}, {"b.gif", "sub", "output"}, {"smiley.png", "", "input"}, {"in.png", "", ""},
		{"up.png", "", ""}, {"abs.png", "", ""}, {"secret.txt", "home", ""}, {"pipe.png", "", ""},
		{"../secret.txt", "", ""}, {"secret.txt", "..", "temp"}, {"a.png", "/", "models"}, {"sub", "", ""},
		{strings.Repeat("v", 256), "", ""}, {"a.png", strings.Repeat("s/", 3000), ""}, {"a\x00.png", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, name, sub, kind string) {
		q := url.Values{"filename": {name}, "subfolder": {sub}, "type": {kind}}
		rec := serve(ts, httptest.NewRequest("GET", "/view?"+q.Encode(), nil))
		switch rec.Code {
		case 200:
			body := rec.Body.Bytes()
			if bytes.Contains(body, secret) {
				t.Fatalf("(%q, %q, %q) served the secret", name, sub, kind)
			}
			ct := rec.Header().Get("Content-Type")
			if ct == "text/html" || strings.HasPrefix(ct, "text/html;") || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("(%q, %q) served as %q", name, sub, ct)
			}
		case 400, 403, 404:
			apiError(t, rec)
		default:
			t.Fatalf("status %d for (%q, %q, %q): %s", rec.Code, name, sub, kind, rec.Body.Bytes())
		}
	})
}
