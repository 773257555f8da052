package synthfaces

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// HeldOutBase is the first held-out identity id. Training identities are
// 0 .. Train-1 and held-out identities HeldOutBase .. HeldOutBase+HeldOut-1,
// so the two ranges never overlap whatever the counts, and growing a split
// never changes the identities already in it.
const HeldOutBase = 1_000_000

// Split folder names inside a generated dataset.
const (
	SplitTrain   = "train"
	SplitHeldOut = "heldout"
)

// Options configure Generate. Zero fields take the defaults in brackets.
type Options struct {
	Seed        uint64 // dataset seed [0]
	Train       int    // training identities [200]; negative for none
	HeldOut     int    // held-out identities [20]; negative for none
	PerIdentity int    // images per identity [8]
	Size        int    // output side in pixels [128]
	Supersample int    // supersampling factor [2]
	Workers     int    // parallel renderers [GOMAXPROCS]
	// Progress, when set, is called after each image (done, total); it may be
	// called from several goroutines.
	Progress func(done, total int)
}

func (o Options) norm() Options {
	if o.Train == 0 {
		o.Train = 200
	}
	if o.HeldOut == 0 {
		o.HeldOut = 20
	}
	if o.PerIdentity <= 0 {
		o.PerIdentity = 8
	}
	if o.Size <= 0 {
		o.Size = 128
	}
	if o.Supersample <= 0 {
		o.Supersample = 2
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Train < 0 {
		o.Train = 0
	}
	if o.HeldOut < 0 {
		o.HeldOut = 0
	}
	return o
}

// Record is one line of metadata.jsonl.
type Record struct {
	File       string    `json:"file"` // PNG file name, relative to the split folder
	Identity   int       `json:"identity"`
	Image      int       `json:"image"`
	Split      string    `json:"split"`
	Caption    string    `json:"caption"`
	Scene      Scene     `json:"scene"`
	Attributes Identity  `json:"identity_attributes"`
	Variation  Variation `json:"variation"`
	FaceBox    [4]int    `json:"face_box"` // x0, y0, x1, y1 in pixels (exclusive max)
	Embedding  Embedding `json:"identity_embedding"`
}

// Manifest is dataset.json at the root of a generated dataset.
type Manifest struct {
	Generator     string `json:"generator"`
	Version       int    `json:"version"`
	Seed          uint64 `json:"seed"`
	Size          int    `json:"size"`
	Supersample   int    `json:"supersample"`
	PerIdentity   int    `json:"per_identity"`
	Train         Range  `json:"train"`
	HeldOut       Range  `json:"heldout"`
	Images        int    `json:"images"`
	EmbeddingNote string `json:"embedding_note"`
}

// Range is a half-open range of identity ids and the folder holding them.
type Range struct {
	Folder string `json:"folder"`
	First  int    `json:"first"`
	End    int    `json:"end"` // exclusive
}

// FileName is the PNG name of image j of identity id ("000042_03.png").
func FileName(id, j int) string { return fmt.Sprintf("%07d_%02d.png", id, j) }

// Generate writes a dataset to dir:
//
//	dir/dataset.json              Manifest
//	dir/train/metadata.jsonl      one Record per image, in (identity, image) order
//	dir/train/0000000_00.png      the image
//	dir/train/0000000_00.txt      its caption (sidecar, no trailing newline)
//	dir/heldout/...               the same for the held-out identities
//
// Every byte is a function of the options except Workers and Progress.
func Generate(dir string, opts Options) (Manifest, error) {
	o := opts.norm()
	m := Manifest{
		Generator: "synthfaces", Version: Version, Seed: o.Seed, Size: o.Size, Supersample: o.Supersample,
		PerIdentity:   o.PerIdentity,
		Train:         Range{SplitTrain, 0, o.Train},
		HeldOut:       Range{SplitHeldOut, HeldOutBase, HeldOutBase + o.HeldOut},
		EmbeddingNote: "identity_embedding is " + EmbeddingSpace + ": a fixed random projection of the identity attributes, a stand-in for a face embedder (see synthfaces/README.md)",
	}
	type job struct {
		split string
		id, j int
		idx   int
	}
	var jobs []job
	for _, r := range []Range{m.Train, m.HeldOut} {
		if err := os.MkdirAll(filepath.Join(dir, r.Folder), 0o755); err != nil {
			return m, err
		}
		for id := r.First; id < r.End; id++ {
			for j := 0; j < o.PerIdentity; j++ {
				jobs = append(jobs, job{r.Folder, id, j, len(jobs)})
			}
		}
	}
	m.Images = len(jobs)
	recs := make([]Record, len(jobs))
	errs := make([]error, len(jobs))
	ch := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	ro := RenderOptions{Size: o.Size, Supersample: o.Supersample}
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for jb := range ch {
				s := RenderSample(o.Seed, jb.id, jb.j, ro)
				rec := Record{
					File: FileName(jb.id, jb.j), Identity: jb.id, Image: jb.j, Split: jb.split,
					Caption: s.Caption, Scene: s.Scene, Attributes: s.Identity, Variation: s.Variation,
					FaceBox:   [4]int{s.FaceBox.Min.X, s.FaceBox.Min.Y, s.FaceBox.Max.X, s.FaceBox.Max.Y},
					Embedding: AttrEmbedding(s.Identity),
				}
				recs[jb.idx] = rec
				errs[jb.idx] = writeSample(filepath.Join(dir, jb.split), rec, s.Pixels)
				if o.Progress != nil {
					mu.Lock()
					done++
					d := done
					mu.Unlock()
					o.Progress(d, len(jobs))
				}
			}
		}()
	}
	for _, jb := range jobs {
		ch <- jb
	}
	close(ch)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return m, err
		}
	}
	for _, r := range []Range{m.Train, m.HeldOut} {
		var buf bytes.Buffer
		for _, rec := range recs {
			if rec.Split != r.Folder {
				continue
			}
			b, err := json.Marshal(rec)
			if err != nil {
				return m, err
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(dir, r.Folder, "metadata.jsonl"), buf.Bytes(), 0o644); err != nil {
			return m, err
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return m, os.WriteFile(filepath.Join(dir, "dataset.json"), append(b, '\n'), 0o644)
}

func writeSample(dir string, rec Record, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, rec.File), buf.Bytes(), 0o644); err != nil {
		return err
	}
	txt := rec.File[:len(rec.File)-len(".png")] + ".txt"
	return os.WriteFile(filepath.Join(dir, txt), []byte(rec.Caption), 0o644)
}

// ReadMetadata reads a split's metadata.jsonl.
func ReadMetadata(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		r.Attributes.resolve()
		out = append(out, r)
	}
	return out, sc.Err()
}
