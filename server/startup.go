package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// The routes ComfyUI's own frontend and tools call at start-up, with
// ComfyUI's shapes: lists of embeddings, extensions and model files (empty
// where face0 has nothing to list), the server's feature flags, the user
// (one, "default") and its settings and files (saved workflows), which live
// under the user folder as ComfyUI keeps them.

// maxUserFile bounds a file written to the user folder (a saved workflow).
const maxUserFile = 64 << 20

func (s *Server) startupRoutes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /embeddings":                 func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []string{}) },
		"GET /extensions":                 func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []string{}) },
		"GET /features":                   s.getFeatures,
		"GET /models":                     s.getModelKinds,
		"GET /models/{folder}":            s.getModels,
		"GET /users":                      s.getUsers,
		"GET /settings":                   s.getSettings,
		"POST /settings":                  s.postSettings,
		"GET /settings/{id}":              s.getSetting,
		"POST /settings/{id}":             s.postSetting,
		"GET /userdata":                   s.listUserData,
		"GET /userdata/{file}":            s.getUserData,
		"POST /userdata/{file}":           s.postUserData,
		"DELETE /userdata/{file}":         s.deleteUserData,
		"POST /userdata/{file}/move/{to}": s.moveUserData,
		// What custom nodes bring in ComfyUI: translations by locale, and
		// example workflows by node pack. face0's plugins bring neither.
		"GET /i18n":               func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, map[string]any{}) },
		"GET /workflow_templates": func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, map[string]any{}) },
	}
}

// getFeatures is ComfyUI's server feature flags (also sent on the websocket).
func (s *Server) getFeatures(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"supports_preview_metadata": true, "max_upload_size": s.cfg.maxUpload})
}

// modelKind is face0's one kind of model: folders in the models directory
// holding a face0.json (what Face0Sampler and the other model inputs list).
const modelKind = "face0"

func (s *Server) getModelKinds(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{modelKind})
}

// getModels lists a kind's models; ComfyUI answers 404 for a folder it does
// not know.
func (s *Server) getModels(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("folder") != modelKind {
		writeError(w, http.StatusNotFound, "unknown_model_folder", fmt.Sprintf("no model folder %q; GET /models lists them", r.PathValue("folder")), nil)
		return
	}
	out := []string{}
	entries, _ := os.ReadDir(s.dirs.GetModels())
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(s.dirs.GetModels(), e.Name(), "face0.json")); err == nil && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getUsers is ComfyUI's single-user answer.
func (s *Server) getUsers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"storage": "server", "migrated": true})
}

// userRoot is the default user's folder: settings and saved files.
func (s *Server) userRoot() (*os.Root, error) {
	return openFolder(filepath.Join(s.cfg.userDir, "default"))
}

const settingsFile = "comfy.settings.json"

func (s *Server) readSettings() (map[string]any, error) {
	root, err := s.userRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := root.ReadFile(settingsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s in the user folder is not a JSON object (%v); fix or delete it", settingsFile, err)
	}
	return out, nil
}

func (s *Server) writeSettings(m map[string]any) error {
	root, err := s.userRoot()
	if err != nil {
		return err
	}
	defer root.Close()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(root, settingsFile, b)
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	m, err := s.readSettings()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "settings_failed", err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) getSetting(w http.ResponseWriter, r *http.Request) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	m, err := s.readSettings()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "settings_failed", err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, m[r.PathValue("id")]) // null when unset, as ComfyUI
}

// postSettings merges an object of settings into the stored ones.
func (s *Server) postSettings(w http.ResponseWriter, r *http.Request) {
	var add map[string]any
	if !readJSON(w, r, 1<<20, &add) {
		return
	}
	s.updateSettings(w, func(m map[string]any) {
		for k, v := range add {
			m[k] = v
		}
	})
}

func (s *Server) postSetting(w http.ResponseWriter, r *http.Request) {
	var v any
	if !readJSON(w, r, 1<<20, &v) {
		return
	}
	s.updateSettings(w, func(m map[string]any) { m[r.PathValue("id")] = v })
}

func (s *Server) updateSettings(w http.ResponseWriter, f func(map[string]any)) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	m, err := s.readSettings()
	if err == nil {
		f(m)
		err = s.writeSettings(m)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "settings_failed", err.Error(), nil)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// userPath checks a client-given path inside the user folder (a {file}
// path value, which may carry encoded slashes).
func userPath(p string) (string, error) {
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	clean, err := cleanSubfolder(p)
	if err != nil || clean == "" {
		if err == nil {
			err = errors.New("no file named")
		}
		return "", err
	}
	return clean, nil
}

type fileInfo struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Modified int64  `json:"modified"`
	Created  int64  `json:"created"`
}

func infoOf(rel string, st fs.FileInfo) fileInfo {
	ms := st.ModTime().UnixMilli()
	return fileInfo{Path: rel, Size: st.Size(), Modified: ms, Created: ms}
}

// listUserData is GET /userdata?dir=&recurse=&full_info=&split=: the files
// under dir (an empty list when there is no such folder yet).
func (s *Server) listUserData(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("dir") == "" {
		writeError(w, http.StatusBadRequest, "no_dir", "give the folder to list: ?dir=workflows", nil)
		return
	}
	dir, err := userPath(q.Get("dir"))
	if err != nil {
		writeError(w, http.StatusForbidden, "bad_dir", err.Error(), nil)
		return
	}
	root, ok := s.openUserRoot(w)
	if !ok {
		return
	}
	defer root.Close()
	recurse := strings.EqualFold(q.Get("recurse"), "true")
	full := strings.EqualFold(q.Get("full_info"), "true")
	split := strings.EqualFold(q.Get("split"), "true")
	out := []any{}
	err = fs.WalkDir(root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && !recurse {
				return fs.SkipDir
			}
			return nil
		}
		rel := strings.TrimPrefix(p, dir+"/")
		st, err := d.Info()
		if err != nil || !st.Mode().IsRegular() {
			return nil
		}
		switch {
		case full:
			out = append(out, infoOf(rel, st))
		case split:
			out = append(out, append([]string{rel}, strings.Split(rel, "/")...))
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fsError(w, err, dir, "user")
		return
	}
	sort.SliceStable(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	writeJSON(w, http.StatusOK, out)
}

// openUserRoot opens the user folder for a handler, answering 500 when it
// cannot (ok false: the answer is written).
func (s *Server) openUserRoot(w http.ResponseWriter) (root *os.Root, ok bool) {
	root, err := s.userRoot()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "userdata_failed", err.Error(), nil)
		return nil, false
	}
	return root, true
}

func (s *Server) getUserData(w http.ResponseWriter, r *http.Request) {
	rel, err := userPath(r.PathValue("file"))
	if err != nil {
		writeError(w, http.StatusForbidden, "bad_file", err.Error(), nil)
		return
	}
	root, ok := s.openUserRoot(w)
	if !ok {
		return
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(rel))
	if err != nil {
		fsError(w, err, rel, "user")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%q in the user folder is not a file", rel), nil)
		return
	}
	// Files here are whatever a client stored: never a page of this origin.
	ct := "application/octet-stream"
	if strings.EqualFold(path.Ext(rel), ".json") {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", "attachment")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// postUserData writes the body as the file (?overwrite=false refuses to
// replace one; ?full_info=true answers with its details).
func (s *Server) postUserData(w http.ResponseWriter, r *http.Request) {
	rel, err := userPath(r.PathValue("file"))
	if err != nil {
		writeError(w, http.StatusForbidden, "bad_file", err.Error(), nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUserFile))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("user files are limited to %d MiB", maxUserFile>>20), nil)
		return
	}
	root, ok := s.openUserRoot(w)
	if !ok {
		return
	}
	defer root.Close()
	if r.URL.Query().Get("overwrite") == "false" {
		if _, err := root.Stat(filepath.FromSlash(rel)); err == nil {
			writeError(w, http.StatusConflict, "exists", fmt.Sprintf("%q exists already", rel), nil)
			return
		}
	}
	dir, name := path.Split(rel)
	sub := root
	if dir != "" {
		if err := root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			uploadError(w, err, dir, "user")
			return
		}
		if sub, err = root.OpenRoot(filepath.FromSlash(dir)); err != nil {
			uploadError(w, err, dir, "user")
			return
		}
		defer sub.Close()
	}
	if err := writeFileAtomic(sub, name, body); err != nil {
		uploadError(w, err, rel, "user")
		return
	}
	s.answerUserFile(w, r, root, rel)
}

func (s *Server) answerUserFile(w http.ResponseWriter, r *http.Request, root *os.Root, rel string) {
	if strings.EqualFold(r.URL.Query().Get("full_info"), "true") {
		st, err := root.Stat(filepath.FromSlash(rel))
		if err != nil {
			fsError(w, err, rel, "user")
			return
		}
		writeJSON(w, http.StatusOK, infoOf(rel, st))
		return
	}
	writeJSON(w, http.StatusOK, rel)
}

func (s *Server) deleteUserData(w http.ResponseWriter, r *http.Request) {
	rel, err := userPath(r.PathValue("file"))
	if err != nil {
		writeError(w, http.StatusForbidden, "bad_file", err.Error(), nil)
		return
	}
	root, ok := s.openUserRoot(w)
	if !ok {
		return
	}
	defer root.Close()
	if err := root.Remove(filepath.FromSlash(rel)); err != nil {
		fsError(w, err, rel, "user")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) moveUserData(w http.ResponseWriter, r *http.Request) {
	from, err := userPath(r.PathValue("file"))
	if err == nil {
		var to string
		if to, err = userPath(r.PathValue("to")); err == nil {
			s.move(w, r, from, to)
			return
		}
	}
	writeError(w, http.StatusForbidden, "bad_file", err.Error(), nil)
}

func (s *Server) move(w http.ResponseWriter, r *http.Request, from, to string) {
	root, ok := s.openUserRoot(w)
	if !ok {
		return
	}
	defer root.Close()
	if _, err := root.Stat(filepath.FromSlash(from)); err != nil {
		fsError(w, err, from, "user")
		return
	}
	if r.URL.Query().Get("overwrite") == "false" {
		if _, err := root.Stat(filepath.FromSlash(to)); err == nil {
			writeError(w, http.StatusConflict, "exists", fmt.Sprintf("%q exists already", to), nil)
			return
		}
	}
	if dir := path.Dir(to); dir != "." {
		if err := root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			uploadError(w, err, dir, "user")
			return
		}
	}
	if err := root.Rename(filepath.FromSlash(from), filepath.FromSlash(to)); err != nil {
		uploadError(w, err, to, "user")
		return
	}
	s.answerUserFile(w, r, root, to)
}
