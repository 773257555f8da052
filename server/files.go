package server

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"

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

// maxNameBytes is the longest file or folder name file systems take (ext4,
// APFS, NTFS all stop at 255), and maxSubfolderBytes bounds a whole subfolder.
const (
	maxNameBytes      = 255
	maxSubfolderBytes = 4096
)

func nameTooLong(what, name string) error {
	return fmt.Errorf("%s %.40q... is %d bytes long; names of up to %d bytes are accepted (a file system limit)", what, name, len(name), maxNameBytes)
}

// cleanSubfolder checks a client-given relative folder: valid UTF-8, no
// absolute paths, no "..", no NUL, no backslashes (a separator on Windows, so
// never trusted), no name over maxNameBytes.
func cleanSubfolder(sub string) (string, error) {
	if sub == "" {
		return "", nil
	}
	if len(sub) > maxSubfolderBytes {
		return "", fmt.Errorf("subfolder is %d bytes long; up to %d are accepted", len(sub), maxSubfolderBytes)
	}
	if !utf8.ValidString(sub) {
		// It could be made, but not named back in a JSON answer.
		return "", fmt.Errorf("subfolder %q is not valid UTF-8", sub)
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
		if len(p) > maxNameBytes {
			return "", nameTooLong("the subfolder name", p)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "/"), nil
}

// openFolder opens a root folder as an os.Root: every operation through it
// stays inside, symlinks included, checked as each path element is opened
// (not before, by a look that a swap of a folder for a link could outrun).
// Relative links that stay inside are followed; absolute links are not.
func openFolder(root string) (*os.Root, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	return os.OpenRoot(root)
}

// errEscapes is os.Root's error for a path that leads out of its folder. It
// is not exported by package os; a Root asked for ".." returns it.
var errEscapes = sync.OnceValue(func() error {
	r, err := os.OpenRoot(os.TempDir())
	if err != nil {
		return nil
	}
	defer r.Close()
	_, err = r.Open("..")
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return nil
})

// fsError answers a failed file operation on what the client asked for.
func fsError(w http.ResponseWriter, err error, what, kind string) {
	e := errEscapes()
	switch {
	case e != nil && errors.Is(err, e), errors.Is(err, syscall.ELOOP):
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%q is not inside the %s folder", what, kind), nil)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no file %q in the %s folder", what, kind), nil)
	case errors.Is(err, syscall.ENAMETOOLONG):
		writeError(w, http.StatusBadRequest, "name_too_long", fmt.Sprintf("%q is too long for the file system; names of up to %d bytes are accepted", what, maxNameBytes), nil)
	default:
		writeError(w, http.StatusInternalServerError, "file_error", fmt.Sprintf("%s in the %s folder: %v", what, kind, err), nil)
	}
}

// getView serves a regular file from the output, input or temp folder, and
// nothing else.
func (s *Server) getView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("filename")
	kind, rootDir, err := s.folder(q.Get("type"), "output")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_type", err.Error(), nil)
		return
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		writeError(w, http.StatusBadRequest, "bad_filename", "filename must be a plain file name; put folders in subfolder", nil)
		return
	}
	if len(name) > maxNameBytes {
		writeError(w, http.StatusBadRequest, "bad_filename", nameTooLong("filename", name).Error(), nil)
		return
	}
	sub, err := cleanSubfolder(q.Get("subfolder"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_subfolder", err.Error(), nil)
		return
	}
	rel := path.Join(sub, name)
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		fsError(w, err, rel, kind)
		return
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer for ever. It changes nothing for a regular file.
	f, err := root.OpenFile(filepath.FromSlash(rel), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		fsError(w, err, rel, kind)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%q in the %s folder is not a regular file", rel, kind), nil)
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
			v, err = io.ReadAll(io.LimitReader(part, maxSubfolderBytes+1))
			if err == nil && len(v) > maxSubfolderBytes {
				writeError(w, http.StatusBadRequest, "bad_field", fmt.Sprintf("the field %q is over %d bytes", part.FormName(), maxSubfolderBytes), nil)
				return
			}
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
	kind, rootDir, err := s.folder(kindArg, "input")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_type", err.Error(), nil)
		return
	}
	sub, err = cleanSubfolder(sub)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_subfolder", err.Error(), nil)
		return
	}
	if base := uploadBase(fileName); len(base) > maxNameBytes {
		writeError(w, http.StatusBadRequest, "bad_filename", nameTooLong("the file name", base).Error(), nil)
		return
	}
	// Check, then act, in one step: every folder is made and opened through
	// an os.Root, which refuses a path that a symlink leads out of before it
	// creates anything there.
	root, err := openFolder(rootDir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "write_failed", fmt.Sprintf("the %s folder: %v", kind, err), nil)
		return
	}
	defer root.Close()
	dir := root
	if sub != "" {
		if err := root.MkdirAll(filepath.FromSlash(sub), 0o755); err != nil {
			uploadError(w, err, "subfolder "+sub, kind)
			return
		}
		if dir, err = root.OpenRoot(filepath.FromSlash(sub)); err != nil {
			uploadError(w, err, "subfolder "+sub, kind)
			return
		}
		defer dir.Close()
	}
	name, err := saveUpload(dir, safeFileName(fileName, exts), data, overwrite == "true" || overwrite == "1")
	if err != nil {
		uploadError(w, fmt.Errorf("could not save the image: %w", err), path.Join(sub, fileName), kind)
		return
	}
	// The file is one of LoadImage's choices now: the specs are asked for
	// again, and a prompt naming the file waits for them.
	if kind == "input" {
		s.startRefresh(true)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "subfolder": sub, "type": kind})
}

// uploadError answers a failed write: a file where a folder is wanted (or
// the reverse) is a conflict the client can resolve.
func uploadError(w http.ResponseWriter, err error, what, kind string) {
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, fs.ErrExist) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("%s in the %s folder: something of another kind is in the way (%v)", what, kind, err), nil)
		return
	}
	fsError(w, err, what, kind)
}

// uploadBase is the last path element of the name a browser sent.
func uploadBase(name string) string {
	return path.Base(strings.ReplaceAll(name, "\\", "/"))
}

// safeFileName keeps the last path element of what the browser sent, drops
// control characters and leading dots, and makes the extension match the
// content, so that /view serves it as the image it is. The result fits in
// maxNameBytes (the base is cut at a character boundary if the extension
// added makes it longer).
func safeFileName(name string, exts []string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '/' {
			return -1
		}
		return r
	}, uploadBase(name))
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
	return fitName(base, "", ext)
}

// fitName joins base, suffix and ext, cutting base (at a character boundary)
// so that the name fits in maxNameBytes.
func fitName(base, suffix, ext string) string {
	room := maxNameBytes - len(suffix) - len(ext)
	for len(base) > room {
		_, size := utf8.DecodeLastRuneInString(base)
		base = base[:len(base)-size]
	}
	return base + suffix + ext
}

// saveUpload writes data as name in dir. Without overwrite an existing
// different file keeps its name and the upload becomes "name (1).ext",
// "name (2).ext", as in ComfyUI; an identical existing file is reused.
func saveUpload(dir *os.Root, name string, data []byte, overwrite bool) (string, error) {
	if overwrite {
		return name, writeFileAtomic(dir, name, data)
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fitName(base, fmt.Sprintf(" (%d)", i), ext)
		}
		f, err := dir.OpenFile(cand, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			if sameContent(dir, cand, data) {
				return cand, nil
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			dir.Remove(cand)
			return "", err
		}
		return cand, f.Close()
	}
	return "", fmt.Errorf("too many files named like %q; choose another name", name)
}

// sameContent reports whether dir/name is a regular file holding data. It
// never blocks on a FIFO and reads nothing of a file of another size.
func sameContent(dir *os.Root, name string, data []byte) bool {
	f, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() != int64(len(data)) {
		return false
	}
	old, err := io.ReadAll(f)
	return err == nil && bytes.Equal(old, data)
}

// writeFileAtomic writes a temporary file in dir and renames it over name.
func writeFileAtomic(dir *os.Root, name string, data []byte) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf(".upload-%x", rnd)
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		dir.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		dir.Remove(tmp)
		return err
	}
	if err := dir.Rename(tmp, name); err != nil {
		dir.Remove(tmp)
		return err
	}
	return nil
}
