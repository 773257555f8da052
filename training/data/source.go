// Package data turns a folder of captioned images into the encoded
// triplets the Face0 trainer learns from (FACE0-PAPER.md §2.1: each
// (image, caption) pair becomes (image, caption, face embedding)), and
// caches them so that a run, a resumed run or the next run with the same
// data does not encode anything twice.
//
// See README.md in this folder for the folder formats, the latent, the
// frozen text encoder and the measured speeds.
package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Metadata and sidecar file names.
const (
	MetadataFile = "metadata.jsonl"
	DatasetFile  = "dataset.json"
)

// Item is one image of a dataset folder, before encoding.
type Item struct {
	File    string // path relative to the dataset folder
	Caption string
	// Embedding is a precomputed face embedding from the metadata (nil:
	// none), in Space.
	Embedding []float32
	Space     string
}

// Problem is a file or record that was skipped, and why.
type Problem struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return p.File + ": " + p.Reason }

// Listing is what Scan found.
type Listing struct {
	Dir      string // the folder the files are relative to
	Items    []Item
	Problems []Problem
	// FromMetadata is true when the captions came from metadata.jsonl.
	FromMetadata bool
}

var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// ScanOptions tune Scan.
type ScanOptions struct {
	// EmbeddingField names the metadata field with a precomputed face
	// embedding; empty tries identity_embedding, face_embedding, embedding.
	EmbeddingField string
	// Space is the embedding space of bare-array embeddings (and overrides
	// none: a record's own "space" wins). Empty: dataset.json's
	// "embedding_space", else "unknown".
	Space string
}

// Scan lists a dataset folder. Two layouts are read:
//
//   - metadata.jsonl, one JSON object per line with "file" (or
//     "file_name") and "caption" (or "text"), optionally a face embedding:
//     {"space": "...", "vector": [...]} or a bare array, under
//     identity_embedding (synthfaces' name), face_embedding or embedding;
//   - otherwise every .png/.jpg/.jpeg with a sidecar .txt caption of the
//     same base name.
//
// A folder with neither but a train/ sub-folder (a synthfaces root) is read
// from train/. Records that cannot be used (bad JSON, a missing image, no
// caption) are listed in Problems and skipped; Scan fails only when the
// folder cannot be read at all or nothing usable is left. Images are not
// decoded here; Prepare reports the ones that do not decode.
func Scan(dir string, o ScanOptions) (*Listing, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data: dataset %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("data: dataset %s is not a folder", dir)
	}
	if !hasData(dir) && hasData(filepath.Join(dir, "train")) {
		dir = filepath.Join(dir, "train")
	}
	space := o.Space
	if space == "" {
		space = datasetSpace(dir)
	}
	l := &Listing{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, MetadataFile)); err == nil {
		l.FromMetadata = true
		if err := l.readMetadata(o.EmbeddingField, space); err != nil {
			return nil, err
		}
	} else if err := l.readSidecars(); err != nil {
		return nil, err
	}
	if len(l.Items) == 0 {
		msg := fmt.Sprintf("data: no usable images in %s (want %s, or images with .txt captions)", dir, MetadataFile)
		if len(l.Problems) > 0 {
			msg += fmt.Sprintf("; %d skipped, first: %s", len(l.Problems), l.Problems[0])
		}
		return nil, errors.New(msg)
	}
	return l, nil
}

func hasData(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, MetadataFile)); err == nil {
		return true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			return true
		}
	}
	return false
}

// datasetSpace reads "embedding_space" from dataset.json here or one level up.
func datasetSpace(dir string) string {
	for _, d := range []string{dir, filepath.Dir(dir)} {
		raw, err := os.ReadFile(filepath.Join(d, DatasetFile))
		if err != nil {
			continue
		}
		var m struct {
			Space string `json:"embedding_space"`
		}
		if json.Unmarshal(raw, &m) == nil && m.Space != "" {
			return m.Space
		}
	}
	return ""
}

// safeRel accepts a file name from metadata only if it stays inside the
// dataset folder.
func safeRel(name string) (string, bool) {
	if name == "" || filepath.IsAbs(name) || strings.ContainsRune(name, 0) {
		return "", false
	}
	c := filepath.Clean(filepath.FromSlash(name))
	if c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return "", false
	}
	return c, true
}

func (l *Listing) readMetadata(field, space string) error {
	path := filepath.Join(l.Dir, MetadataFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	fields := []string{"identity_embedding", "face_embedding", "embedding"}
	if field != "" {
		fields = []string{field}
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		where := fmt.Sprintf("%s line %d", MetadataFile, line)
		var rec map[string]json.RawMessage
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			l.Problems = append(l.Problems, Problem{where, "not a JSON object: " + err.Error()})
			continue
		}
		file := str(rec, "file", "file_name")
		rel, ok := safeRel(file)
		if !ok {
			l.Problems = append(l.Problems, Problem{where, fmt.Sprintf("file %q is missing or leaves the dataset folder", file)})
			continue
		}
		if seen[rel] {
			l.Problems = append(l.Problems, Problem{rel, "listed twice in " + MetadataFile + "; the first record is used"})
			continue
		}
		if fi, err := os.Stat(filepath.Join(l.Dir, rel)); err != nil || fi.IsDir() {
			l.Problems = append(l.Problems, Problem{rel, "image file not found (" + where + ")"})
			continue
		}
		it := Item{File: rel, Caption: str(rec, "caption", "text")}
		if it.Caption == "" {
			if c, err := sidecar(filepath.Join(l.Dir, rel)); err == nil {
				it.Caption = c
			}
		}
		if it.Caption == "" {
			l.Problems = append(l.Problems, Problem{rel, "no caption (" + where + " has none and there is no .txt)"})
			continue
		}
		for _, f := range fields {
			if v, ok := rec[f]; ok && string(v) != "null" {
				vec, sp, err := parseEmbedding(v)
				if err != nil {
					l.Problems = append(l.Problems, Problem{rel, fmt.Sprintf("%s: %s: %v", where, f, err)})
					goto next
				}
				if sp == "" {
					sp = space
				}
				it.Embedding, it.Space = vec, sp
				break
			}
		}
		seen[rel] = true
		l.Items = append(l.Items, it)
	next:
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("data: %s: %w", path, err)
	}
	return nil
}

func str(rec map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		if v, ok := rec[k]; ok {
			var s string
			if json.Unmarshal(v, &s) == nil && s != "" {
				return s
			}
		}
	}
	return ""
}

func parseEmbedding(raw json.RawMessage) ([]float32, string, error) {
	var obj struct {
		Space  string    `json:"space"`
		Vector []float32 `json:"vector"`
	}
	if err := json.Unmarshal(raw, &obj); err == nil && len(obj.Vector) > 0 {
		return obj.Vector, obj.Space, nil
	}
	var arr []float32
	if err := json.Unmarshal(raw, &arr); err == nil && len(arr) > 0 {
		return arr, "", nil
	}
	return nil, "", errors.New(`want {"space": ..., "vector": [numbers]} or an array of numbers`)
}

func sidecar(image string) (string, error) {
	b, err := os.ReadFile(strings.TrimSuffix(image, filepath.Ext(image)) + ".txt")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (l *Listing) readSidecars() error {
	var files []string
	err := filepath.WalkDir(l.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			rel, _ := filepath.Rel(l.Dir, p)
			l.Problems = append(l.Problems, Problem{rel, err.Error()})
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if p != l.Dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if imageExts[strings.ToLower(filepath.Ext(p))] {
			rel, _ := filepath.Rel(l.Dir, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("data: list %s: %w", l.Dir, err)
	}
	sort.Strings(files)
	for _, rel := range files {
		c, err := sidecar(filepath.Join(l.Dir, rel))
		if err != nil || c == "" {
			l.Problems = append(l.Problems, Problem{rel, "no caption: " + strings.TrimSuffix(filepath.Base(rel), filepath.Ext(rel)) + ".txt is missing or empty"})
			continue
		}
		l.Items = append(l.Items, Item{File: rel, Caption: c})
	}
	return nil
}
