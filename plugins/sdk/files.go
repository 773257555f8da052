package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// File is a file a node wrote, as its ui output lists it: ComfyUI's
// {"filename", "subfolder", "type"} record (what /view serves), plus the
// SHA-256 of the content, which lets VerifyFiles tell the file the node wrote
// from one replaced under the same name.
type File struct {
	Filename  string // base name
	Subfolder string // inside the folder of Type, '/'-separated; "" for the folder itself
	Type      string // "output" or "temp" (or "input")
	SHA256    string // hex
}

// Record is the file as a ui record.
func (f File) Record() *pb.Value {
	v, err := value.FromJSON(map[string]any{"filename": f.Filename, "subfolder": f.Subfolder, "type": f.Type, "sha256": f.SHA256})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return v
}

// FilesUI lists files as a ui output value, the shape ComfyUI clients show:
//
//	type saveOut struct {
//		UI sdk.Raw `face0:"images,type=UI,ui"`
//	}
//	...
//	return saveOut{UI: sdk.FilesUI(files...)}, nil
func FilesUI(files ...File) Raw {
	items := make([]*pb.Value, len(files))
	for i, f := range files {
		items[i] = f.Record()
	}
	return &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: items}}}
}

// folderOf maps a record's type to the host's folder.
func folderOf(dirs *pb.Dirs, kind string) (string, error) {
	var dir string
	switch kind {
	case "output":
		dir = dirs.GetOutput()
	case "temp":
		dir = dirs.GetTemp()
	case "input":
		dir = dirs.GetInput()
	default:
		return "", fmt.Errorf("file type %q is not output, temp or input", kind)
	}
	if dir == "" {
		return "", fmt.Errorf("the host gave no %s folder", kind)
	}
	return dir, nil
}

var fileCounter atomic.Int64

// SaveFile writes data as a new file into the host's folder of kind
// ("output" or "temp") and returns its record for the node's ui output.
// prefix is the user's filename prefix: a name, optionally under subfolders
// ("portraits/alice"), that must stay inside the folder. The file is named
// <prefix>_<date>-<time>_<counter><ext> and never replaces a file. But when
// a file of that prefix already holds exactly data, SaveFile returns that
// one and writes nothing: a node with side effects that runs again (see
// SideEffects) leaves the file where it was instead of a duplicate.
func (c *Context) SaveFile(kind, prefix, ext string, data []byte) (File, error) {
	if kind != "output" && kind != "temp" {
		return File{}, fmt.Errorf("SaveFile: kind %q is not output or temp", kind)
	}
	root, err := folderOf(c.Dirs, kind)
	if err != nil {
		return File{}, err
	}
	clean := filepath.Clean(filepath.FromSlash(prefix))
	if prefix == "" || clean == "." || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) || strings.ContainsRune(prefix, 0) {
		return File{}, fmt.Errorf("filename prefix %q must name a file inside the %s folder", prefix, kind)
	}
	sub, base := filepath.Dir(clean), filepath.Base(clean)
	if strings.HasPrefix(base, ".") {
		return File{}, fmt.Errorf("filename prefix %q must end in a name that does not start with a dot", prefix)
	}
	dir := filepath.Join(root, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return File{}, fmt.Errorf("cannot make the folder for %q: %w", prefix, err)
	}
	sum := sha256.Sum256(data)
	f := File{Subfolder: filepath.ToSlash(sub), Type: kind, SHA256: hex.EncodeToString(sum[:])}
	if f.Subfolder == "." {
		f.Subfolder = ""
	}
	if f.Filename, err = sameFile(dir, base, ext, data); err != nil {
		return File{}, err
	}
	if f.Filename != "" {
		return f, nil
	}
	stamp := time.Now().Format("20060102-150405")
	f.Filename, err = writeNew(dir, func() string {
		return fmt.Sprintf("%s_%s_%05d%s", base, stamp, fileCounter.Add(1), ext)
	}, data)
	return f, err
}

// sameFile finds a file named as SaveFile names base's files (also the
// batch-numbered names of earlier versions, ..._00001_0.png) that holds
// exactly data. Only files of the same size are read.
func sameFile(dir, base, ext string, data []byte) (string, error) {
	pattern := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `_\d{8}-\d{6}_\d{5,}(_\d+)?` + regexp.QuoteMeta(ext) + `$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cannot list %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !pattern.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != int64(len(data)) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && bytes.Equal(b, data) {
			return e.Name(), nil
		}
	}
	return "", nil
}

// writeNew writes data under a fresh name from next, never replacing a file:
// the data goes to a temp file first and is then hard-linked into place,
// which fails if the name exists (two runs, or two processes, in the same
// second).
func writeNew(dir string, next func() string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("cannot write into %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("cannot write into %s: %w", dir, err)
	}
	for i := 0; i < 1000; i++ {
		name := next()
		err := os.Link(tmp.Name(), filepath.Join(dir, name))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("cannot write into %s: %w", dir, err)
		}
	}
	return "", fmt.Errorf("could not find a free file name in %s", dir)
}

// VerifyFiles is a VerifyFunc for nodes that list the files they wrote in
// their ui output (FilesUI, or any {"filename", "subfolder", "type"}
// records): each must still be in the folder of its type, and, where the
// record carries a sha256, hold the same bytes. Use it as
// sdk.SideEffects(sdk.VerifyFiles).
func VerifyFiles(ctx context.Context, dirs *pb.Dirs, _ map[string]*pb.Value, outputs *pb.Outputs) error {
	var files []File
	for _, v := range outputs.GetUi() {
		files = appendFiles(files, v)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.check(dirs); err != nil {
			return err
		}
	}
	return nil
}

// appendFiles collects the file records in a ui value: a record, or a list
// of them.
func appendFiles(files []File, v *pb.Value) []File {
	if l := v.GetList(); l != nil {
		for _, it := range l.Items {
			files = appendFiles(files, it)
		}
		return files
	}
	r := v.GetRecord().GetFields()
	if r["filename"] == nil || r["type"] == nil {
		return files
	}
	return append(files, File{
		Filename: r["filename"].GetString_(), Subfolder: r["subfolder"].GetString_(),
		Type: r["type"].GetString_(), SHA256: r["sha256"].GetString_(),
	})
}

// check says whether the file is where its record says, with its content.
func (f File) check(dirs *pb.Dirs) error {
	root, err := folderOf(dirs, f.Type)
	if err != nil {
		return err
	}
	rel := path.Join(f.Subfolder, f.Filename)
	if f.Filename == "" || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("file %q in %q is not a name inside the %s folder", f.Filename, f.Subfolder, f.Type)
	}
	p := filepath.Join(root, filepath.FromSlash(rel))
	file, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is gone", p)
		}
		return err
	}
	defer file.Close()
	if info, err := file.Stat(); err != nil || !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file any more", p)
	}
	if f.SHA256 == "" {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("%s was changed since it was written", p)
	}
	return nil
}
