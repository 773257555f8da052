package server

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	// Uploads must decode as one of these; webp comes from x/image.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"
)

// folder maps ComfyUI's "type" parameter to a root folder.
func (s *Server) folder(kind, def string) (string, string, error) {
	if kind == "" {
		kind = def
	}
	var root string
	switch kind {
	case "output":
		root = s.dirs.GetOutput()
	case "input":
		root = s.dirs.GetInput()
	case "temp":
		root = s.dirs.GetTemp()
	default:
		return "", "", fmt.Errorf("type %q is not one of output, input, temp", kind)
	}
	if root == "" {
		return "", "", fmt.Errorf("the %s folder is not configured", kind)
	}
	return kind, root, nil
}

// cleanSubfolder checks a client-given relative folder: no absolute paths, no
// "..", no NUL, no backslashes (a separator on Windows, so never trusted).
func cleanSubfolder(sub string) (string, error) {
	if sub == "" {
		return "", nil
	}
	if strings.ContainsAny(sub, "\x00\\") || path.IsAbs(sub) || filepath.IsAbs(sub) {
		return "", fmt.Errorf("subfolder %q must be a relative folder inside the root, with '/' separators", sub)
	}
	var parts []string
	for _, p := range strings.Split(sub, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("subfolder %q must not contain '..'", sub)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "/"), nil
}

// within resolves symlinks in p and checks the result is still under root, so a
// link planted in the output folder cannot expose the rest of the disk.
func within(root, p string) (string, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(realRoot, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", errOutside
	}
	return real, nil
}

var errOutside = errors.New("the path leads outside its folder")

// getView serves a file from the output, input or temp folder, and nothing else.
func (s *Server) getView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("filename")
	kind, root, err := s.folder(q.Get("type"), "output")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_type", err.Error(), nil)
		return
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		writeError(w, http.StatusBadRequest, "bad_filename", "filename must be a plain file name; put folders in subfolder", nil)
		return
	}
	sub, err := cleanSubfolder(q.Get("subfolder"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_subfolder", err.Error(), nil)
		return
	}
	p, err := within(root, filepath.Join(root, filepath.FromSlash(sub), name))
	switch {
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no file %q in the %s folder", path.Join(sub, name), kind), nil)
		return
	case err != nil:
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%q is not inside the %s folder", path.Join(sub, name), kind), nil)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", err.Error(), nil)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%q is not a file", path.Join(sub, name)), nil)
		return
	}
	ct := mime.TypeByExtension(strings.ToLower(filepath.Ext(name)))
	if ct == "" {
		var head [512]byte
		n, _ := io.ReadFull(f, head[:])
		ct = http.DetectContentType(head[:n])
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			writeError(w, http.StatusInternalServerError, "read_failed", err.Error(), nil)
			return
		}
	}
	h := w.Header()
	// Files here can come from any plugin or upload; never let one run as a
	// page of this origin.
	if !strings.HasPrefix(ct, "image/") || strings.HasPrefix(ct, "image/svg") {
		if !strings.HasPrefix(ct, "video/") && !strings.HasPrefix(ct, "audio/") {
			ct = "application/octet-stream"
		}
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// uploadFormats are the accepted image types, by sniffed content type, with
// the extensions a file of that type may carry (the first is the one added).
var uploadFormats = map[string][]string{
	"image/png":  {".png"},
	"image/jpeg": {".jpg", ".jpeg"},
	"image/gif":  {".gif"},
	"image/webp": {".webp"},
}

// maxUploadPixels refuses decompression bombs by their header.
const maxUploadPixels = 100_000_000

// postUpload stores an image in the input (or temp/output) folder, ComfyUI's
// /upload/image: multipart fields image (the file), overwrite, subfolder, type.
func (s *Server) postUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.maxUpload+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "not_multipart", `send multipart/form-data with the file in the field "image"`, nil)
		return
	}
	var (
		data                    []byte
		fileName                string
		gotFile                 bool
		overwrite, sub, kindArg string
	)
	tooBig := func() {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the image is over the upload limit of %d MiB", s.cfg.maxUpload>>20), nil)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				tooBig()
				return
			}
			writeError(w, http.StatusBadRequest, "bad_multipart", "could not read the form: "+err.Error(), nil)
			return
		}
		switch part.FormName() {
		case "image":
			fileName, gotFile = part.FileName(), true
			data, err = io.ReadAll(io.LimitReader(part, s.cfg.maxUpload+1))
			if err == nil && int64(len(data)) > s.cfg.maxUpload {
				tooBig()
				return
			}
		case "overwrite", "subfolder", "type":
			var v []byte
			v, err = io.ReadAll(io.LimitReader(part, 4096))
			switch part.FormName() {
			case "overwrite":
				overwrite = string(v)
			case "subfolder":
				sub = string(v)
			case "type":
				kindArg = string(v)
			}
		default:
			_, err = io.Copy(io.Discard, part)
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				tooBig()
				return
			}
			writeError(w, http.StatusBadRequest, "bad_multipart", "could not read the form: "+err.Error(), nil)
			return
		}
	}
	if !gotFile || len(data) == 0 {
		writeError(w, http.StatusBadRequest, "no_image", `no image: send the file in the multipart field "image"`, nil)
		return
	}
	ct := http.DetectContentType(data)
	exts, ok := uploadFormats[ct]
	if !ok {
		writeError(w, http.StatusBadRequest, "not_an_image", fmt.Sprintf("the file is %s; upload a PNG, JPEG, WebP or GIF image", ct), nil)
		return
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_image", "the image header does not decode ("+err.Error()+"); the file is corrupt or not really an image", nil)
		return
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxUploadPixels {
		writeError(w, http.StatusBadRequest, "bad_image", fmt.Sprintf("the image is %dx%d pixels; up to %d megapixels are accepted", cfg.Width, cfg.Height, maxUploadPixels/1_000_000), nil)
		return
	}
	kind, root, err := s.folder(kindArg, "input")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_type", err.Error(), nil)
		return
	}
	sub, err = cleanSubfolder(sub)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_subfolder", err.Error(), nil)
		return
	}
	dir := filepath.Join(root, filepath.FromSlash(sub))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		writeError(w, http.StatusInternalServerError, "write_failed", "could not create the folder: "+err.Error(), nil)
		return
	}
	if dir, err = within(root, dir); err != nil {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("subfolder %q is not inside the %s folder", sub, kind), nil)
		return
	}
	name := safeFileName(fileName, exts)
	name, err = saveUpload(dir, name, data, overwrite == "true" || overwrite == "1")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "write_failed", "could not save the image: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "subfolder": sub, "type": kind})
}

// safeFileName keeps the last path element of what the browser sent, drops
// control characters and leading dots, bounds the length, and makes the
// extension match the content, so that /view serves it as the image it is.
func safeFileName(name string, exts []string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '/' {
			return -1
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	ext := strings.ToLower(filepath.Ext(name))
	base := strings.TrimSuffix(name, filepath.Ext(name))
	okExt := false
	for _, e := range exts {
		okExt = okExt || ext == e
	}
	if !okExt {
		base, ext = name, exts[0]
	}
	if base == "" {
		base = "upload"
	}
	if r := []rune(base); len(r) > 150 {
		base = string(r[:150])
	}
	return base + ext
}

// saveUpload writes data as dir/name. Without overwrite an existing different
// file keeps its name and the upload becomes "name (1).ext", "name (2).ext", as
// in ComfyUI; an identical existing file is reused.
func saveUpload(dir, name string, data []byte, overwrite bool) (string, error) {
	if overwrite {
		return name, writeFileAtomic(filepath.Join(dir, name), data)
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", base, i, ext)
		}
		p := filepath.Join(dir, cand)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
				return cand, nil
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(p)
			return "", err
		}
		return cand, f.Close()
	}
	return "", fmt.Errorf("too many files named like %q; choose another name", name)
}

func writeFileAtomic(p string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".upload-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), p)
}
