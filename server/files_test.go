package server

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func encoded(t testing.TB, format string) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	img.Set(1, 1, color.NRGBA{R: 200, A: 255})
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, nil)
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestView(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home)
	out := filepath.Join(home, "output")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(out, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(out, "sub", "a.png"), encoded(t, "png"), 0o644))
	must(os.WriteFile(filepath.Join(out, "page.html"), []byte("<script>alert(1)</script>"), 0o644))
	must(os.WriteFile(filepath.Join(home, "secret.txt"), []byte("secret"), 0o644))
	must(os.Symlink(filepath.Join(home, "secret.txt"), filepath.Join(out, "link.png")))
	must(os.Symlink(home, filepath.Join(out, "escape")))
	must(os.Symlink("sub/a.png", filepath.Join(out, "inside.png")))
	// Absolute links are not followed, even to a file inside (os.Root's rule).
	must(os.Symlink(filepath.Join(out, "sub", "a.png"), filepath.Join(out, "absolute.png")))
	must(os.WriteFile(filepath.Join(home, "temp", "t.jpg"), encoded(t, "jpeg"), 0o644))

	for _, tc := range []struct {
		name   string
		q      url.Values
		code   int
		ctype  string
		secret bool // the body must not be the secret
	}{
		{"output file", url.Values{"filename": {"a.png"}, "subfolder": {"sub"}}, 200, "image/png", false},
		{"explicit type", url.Values{"filename": {"a.png"}, "subfolder": {"sub"}, "type": {"output"}}, 200, "image/png", false},
		{"input file", url.Values{"filename": {"smiley.png"}, "type": {"input"}}, 200, "image/png", false},
		{"temp jpeg", url.Values{"filename": {"t.jpg"}, "type": {"temp"}}, 200, "image/jpeg", false},
		{"html is not served as a page", url.Values{"filename": {"page.html"}}, 200, "application/octet-stream", false},
		{"symlink inside is fine", url.Values{"filename": {"inside.png"}}, 200, "image/png", false},
		{"absolute symlink", url.Values{"filename": {"absolute.png"}}, 403, "", false},
		{"missing", url.Values{"filename": {"nope.png"}}, 404, "", false},
		{"no filename", url.Values{}, 400, "", false},
		{"bad type", url.Values{"filename": {"a.png"}, "type": {"models"}}, 400, "", false},
		{"dotdot filename", url.Values{"filename": {"../secret.txt"}}, 400, "", true},
		{"dotdot alone", url.Values{"filename": {".."}}, 400, "", true},
		{"dotdot subfolder", url.Values{"filename": {"secret.txt"}, "subfolder": {".."}}, 400, "", true},
		{"nested dotdot", url.Values{"filename": {"secret.txt"}, "subfolder": {"sub/../.."}}, 400, "", true},
		{"absolute subfolder", url.Values{"filename": {"secret.txt"}, "subfolder": {home}}, 400, "", true},
		{"absolute filename", url.Values{"filename": {filepath.Join(home, "secret.txt")}}, 400, "", true},
		{"backslash", url.Values{"filename": {`..\secret.txt`}}, 400, "", true},
		{"NUL", url.Values{"filename": {"a.png\x00.txt"}, "subfolder": {"sub"}}, 400, "", true},
		{"symlink to outside file", url.Values{"filename": {"link.png"}}, 403, "", true},
		{"symlinked folder to outside", url.Values{"filename": {"secret.txt"}, "subfolder": {"escape"}}, 403, "", true},
		{"a folder", url.Values{"filename": {"sub"}}, 404, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(ts.url + "/view?" + tc.q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("code %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("content type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.secret && strings.Contains(string(body), "secret\"") || string(body) == "secret" {
				t.Errorf("leaked the secret")
			}
			if resp.StatusCode == 200 && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no nosniff header")
			}
		})
	}
}

type upload struct {
	fileName  string
	data      []byte
	fields    map[string]string
	noFile    bool
	rawBody   string // sent as is, not multipart
	fieldName string
}

func (u upload) send(t testing.TB, base string) (int, map[string]any) {
	t.Helper()
	if u.rawBody != "" {
		return call(t, "POST", base+"/upload/image", u.rawBody, "Content-Type", "application/json")
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range u.fields {
		_ = mw.WriteField(k, v)
	}
	if !u.noFile {
		field := u.fieldName
		if field == "" {
			field = "image"
		}
		fw, err := mw.CreateFormFile(field, u.fileName)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(u.data)
	}
	_ = mw.Close()
	return call(t, "POST", base+"/upload/image", b.Bytes(), "Content-Type", mw.FormDataContentType())
}

func TestUpload(t *testing.T) {
	home := newHome(t)
	ts := startServer(t, home, WithUploadLimit(64<<10))
	pngData, jpgData, gifData := encoded(t, "png"), encoded(t, "jpeg"), encoded(t, "gif")
	other := encoded(t, "png")
	other = append(other[:len(other):len(other)], 0) // same image, different bytes
	// A minimal WebP (VP8L, 1x1) to check the format is accepted.
	webp := []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
	big := append(append([]byte{}, pngData...), make([]byte, 70<<10)...)
	for _, tc := range []struct {
		name    string
		u       upload
		code    int
		want    map[string]any // expected answer (name, subfolder, type)
		errType string
	}{
		{"png", upload{fileName: "face.png", data: pngData}, 200, map[string]any{"name": "face.png", "subfolder": "", "type": "input"}, ""},
		{"same content reuses the name", upload{fileName: "face.png", data: pngData}, 200, map[string]any{"name": "face.png", "subfolder": "", "type": "input"}, ""},
		{"different content is deduped", upload{fileName: "face.png", data: other}, 200, map[string]any{"name": "face (1).png", "subfolder": "", "type": "input"}, ""},
		{"overwrite", upload{fileName: "face.png", data: other, fields: map[string]string{"overwrite": "true"}}, 200, map[string]any{"name": "face.png", "subfolder": "", "type": "input"}, ""},
		{"jpeg in a subfolder", upload{fileName: "x.jpeg", data: jpgData, fields: map[string]string{"subfolder": "faces/a"}}, 200, map[string]any{"name": "x.jpeg", "subfolder": "faces/a", "type": "input"}, ""},
		{"gif to temp", upload{fileName: "g.gif", data: gifData, fields: map[string]string{"type": "temp"}}, 200, map[string]any{"name": "g.gif", "subfolder": "", "type": "temp"}, ""},
		{"webp", upload{fileName: "w.webp", data: webp}, 200, map[string]any{"name": "w.webp", "subfolder": "", "type": "input"}, ""},
		{"wrong extension is fixed", upload{fileName: "evil.html", data: pngData}, 200, map[string]any{"name": "evil.html.png", "subfolder": "", "type": "input"}, ""},
		{"traversal in the name", upload{fileName: "../../escape.png", data: pngData}, 200, map[string]any{"name": "escape.png", "subfolder": "", "type": "input"}, ""},
		{"windows traversal in the name", upload{fileName: `..\..\win.png`, data: pngData}, 200, map[string]any{"name": "win.png", "subfolder": "", "type": "input"}, ""},
		{"hidden name", upload{fileName: ".hidden.png", data: pngData}, 200, map[string]any{"name": "hidden.png", "subfolder": "", "type": "input"}, ""},
		{"empty name", upload{fileName: "", data: pngData}, 200, map[string]any{"name": "upload.png", "subfolder": "", "type": "input"}, ""},
		{"subfolder traversal", upload{fileName: "a.png", data: pngData, fields: map[string]string{"subfolder": "../x"}}, 400, nil, "bad_subfolder"},
		{"absolute subfolder", upload{fileName: "a.png", data: pngData, fields: map[string]string{"subfolder": "/tmp"}}, 400, nil, "bad_subfolder"},
		{"bad type", upload{fileName: "a.png", data: pngData, fields: map[string]string{"type": "models"}}, 400, nil, "bad_type"},
		{"text file", upload{fileName: "a.png", data: []byte("hello, I am not an image")}, 400, nil, "not_an_image"},
		{"html file", upload{fileName: "a.html", data: []byte("<html><script>alert(1)</script>")}, 400, nil, "not_an_image"},
		{"png header only", upload{fileName: "a.png", data: pngData[:20]}, 400, nil, "bad_image"},
		{"oversized", upload{fileName: "big.png", data: big}, 413, nil, "too_large"},
		{"empty file", upload{fileName: "a.png", data: nil}, 400, nil, "no_image"},
		{"no file", upload{noFile: true, fields: map[string]string{"subfolder": "x"}}, 400, nil, "no_image"},
		{"wrong field", upload{fileName: "a.png", data: pngData, fieldName: "file"}, 400, nil, "no_image"},
		{"not multipart", upload{rawBody: `{"image": "x"}`}, 400, nil, "not_multipart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := tc.u.send(t, ts.url)
			if code != tc.code {
				t.Fatalf("code %d, want %d: %v", code, tc.code, out)
			}
			if tc.errType != "" {
				if e, _ := out["error"].(map[string]any); e == nil || e["type"] != tc.errType {
					t.Fatalf("error %v, want type %s", out["error"], tc.errType)
				}
				return
			}
			for k, v := range tc.want {
				if out[k] != v {
					t.Fatalf("%s = %v, want %v (%v)", k, out[k], v, out)
				}
			}
			// The file is where the answer says, and /view serves it back.
			q := url.Values{"filename": {out["name"].(string)}, "subfolder": {out["subfolder"].(string)}, "type": {out["type"].(string)}}
			resp, err := http.Get(ts.url + "/view?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(body, tc.u.data) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
				t.Fatalf("view of the upload: %d %s %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
			}
		})
	}
	if _, err := os.Stat(filepath.Join(home, "escape.png")); err == nil {
		t.Fatal("an upload escaped the input folder")
	}
	// A symlinked subfolder pointing outside is refused.
	if err := os.Symlink(t.TempDir(), filepath.Join(home, "input", "out")); err != nil {
		t.Fatal(err)
	}
	if code, out := (upload{fileName: "a.png", data: pngData, fields: map[string]string{"subfolder": "out"}}).send(t, ts.url); code != 403 {
		t.Fatalf("symlinked subfolder: %d %v", code, out)
	}
	// An uploaded image runs through LoadImage.
	wf := map[string]any{"version": 1, "nodes": []any{
		map[string]any{"id": "l", "type": "LoadImage", "inputs": map[string]any{"image": "faces/a/x.jpeg"}},
		map[string]any{"id": "p", "type": "PreviewImage", "inputs": map[string]any{"images": map[string]any{"node": "l", "output": "IMAGE"}}},
	}}
	id := submit(t, ts.url, map[string]any{"prompt": wf})
	if st := waitHistory(t, ts.url, id)["status"].(map[string]any); st["status_str"] != "success" {
		t.Fatalf("run of the upload: %v", st)
	}
}
