package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
)

func fileCtx(t *testing.T) (*Context, *pb.Dirs) {
	dirs := &pb.Dirs{Output: t.TempDir(), Temp: t.TempDir(), Input: t.TempDir()}
	c := NewContext(context.Background(), "n", nil)
	c.Dirs = dirs
	return c, dirs
}

func TestSaveFileReusesIdenticalFiles(t *testing.T) {
	c, dirs := fileCtx(t)
	a, err := c.SaveFile("output", "shots/cat", ".txt", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("one"))
	if a.Subfolder != "shots" || a.Type != "output" || a.SHA256 != hex.EncodeToString(sum[:]) || !strings.HasPrefix(a.Filename, "cat_") {
		t.Fatalf("record %+v", a)
	}
	same, err := c.SaveFile("output", "shots/cat", ".txt", []byte("one"))
	if err != nil || same != a {
		t.Fatalf("same content again: %+v, %v; want %+v", same, err, a)
	}
	other, err := c.SaveFile("output", "shots/cat", ".txt", []byte("two"))
	if err != nil || other.Filename == a.Filename {
		t.Fatalf("other content: %+v, %v", other, err)
	}
	// Files of another prefix, or named otherwise, are never taken over,
	// even with the same content; a file named by an earlier version is.
	dir := filepath.Join(dirs.Output, "shots")
	for name, data := range map[string]string{
		"cat_x_20240101-120000_00001.txt": "three",
		"cat.txt":                         "three",
		"cat_20240101-120000_00007_0.txt": "four",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if f, _ := c.SaveFile("output", "shots/cat", ".txt", []byte("three")); f.Filename == "cat_x_20240101-120000_00001.txt" || f.Filename == "cat.txt" {
		t.Errorf("took over %s", f.Filename)
	}
	if f, _ := c.SaveFile("output", "shots/cat", ".txt", []byte("four")); f.Filename != "cat_20240101-120000_00007_0.txt" {
		t.Errorf("an earlier version's identical file not reused: wrote %s", f.Filename)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 { // one, two, three (new), and the three planted
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %v", names)
	}
	top, err := c.SaveFile("temp", "preview", ".png", []byte("p"))
	if err != nil || top.Subfolder != "" || top.Type != "temp" {
		t.Errorf("temp file at the top: %+v, %v", top, err)
	}
	if _, err := os.Stat(filepath.Join(dirs.Temp, top.Filename)); err != nil {
		t.Error(err)
	}
}

func TestSaveFileRefusesBadPrefixes(t *testing.T) {
	c, _ := fileCtx(t)
	for _, tc := range []struct{ kind, prefix, want string }{
		{"output", "../escape", "inside the output folder"},
		{"output", "a/../../escape", "inside the output folder"},
		{"output", "/etc/cron.d/x", "inside the output folder"},
		{"output", "", "inside the output folder"},
		{"output", "sub/.hidden", "does not start with a dot"},
		{"output", "sub/..", "inside the output folder"},
		{"temp", "a\x00b", "inside the temp folder"},
		{"models", "x", "not output or temp"},
	} {
		if _, err := c.SaveFile(tc.kind, tc.prefix, ".png", []byte("x")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SaveFile(%q, %q): %v, want %q", tc.kind, tc.prefix, err, tc.want)
		}
	}
	c.Dirs = &pb.Dirs{}
	if _, err := c.SaveFile("output", "x", ".png", []byte("x")); err == nil || !strings.Contains(err.Error(), "no output folder") {
		t.Errorf("without an output folder: %v", err)
	}
}

func TestVerifyFiles(t *testing.T) {
	c, dirs := fileCtx(t)
	a, err := c.SaveFile("output", "v/a", ".txt", []byte("aaa"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.SaveFile("temp", "b", ".txt", []byte("bbb"))
	if err != nil {
		t.Fatal(err)
	}
	outs := func(files ...File) *pb.Outputs {
		return &pb.Outputs{Ui: map[string]*pb.Value{"files": FilesUI(files...)}}
	}
	check := func(o *pb.Outputs) error { return VerifyFiles(context.Background(), dirs, nil, o) }
	if err := check(outs(a, b)); err != nil {
		t.Fatalf("files in place: %v", err)
	}
	if err := check(&pb.Outputs{}); err != nil {
		t.Errorf("no files listed: %v", err)
	}
	if err := check(&pb.Outputs{Ui: map[string]*pb.Value{"one": a.Record()}}); err != nil {
		t.Errorf("a single record: %v", err)
	}
	pa := filepath.Join(dirs.Output, "v", a.Filename)
	noSum := a
	noSum.SHA256 = ""
	for _, tc := range []struct {
		name  string
		files []File
		prep  func()
		want  string
	}{
		{"changed", []File{a, b}, func() { os.WriteFile(pa, []byte("AAA"), 0o644) }, "was changed"},
		{"without a sum only existence counts", []File{noSum}, nil, ""},
		{"gone", []File{b, a}, func() { os.Remove(pa) }, "is gone"},
		{"a folder in its place", []File{a}, func() { os.Mkdir(pa, 0o755) }, "not a file"},
		{"unknown type", []File{{Filename: "x", Type: "models"}}, nil, "not output, temp or input"},
		{"escaping subfolder", []File{{Filename: "passwd", Subfolder: "../../etc", Type: "output"}}, nil, "inside the output folder"},
		{"no name", []File{{Type: "output"}}, nil, "inside the output folder"},
	} {
		if tc.prep != nil {
			tc.prep()
		}
		err := check(outs(tc.files...))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := VerifyFiles(ctx, dirs, nil, outs(b)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled check: %v", err)
	}
}

type sideIn struct {
	Value int64 `face0:"value"`
}

type sideOut struct {
	UI Raw `face0:"files,type=UI,ui"`
}

func TestSideEffectsSpecAndVerify(t *testing.T) {
	noop := func(*Context, sideIn) (sideOut, error) { return sideOut{}, nil }
	srv, err := NewServer(Pack{Name: "p", Nodes: []Node{
		Func("Plain", noop),
		Func("Unchecked", noop, SideEffects(nil)),
		Func("Checked", noop, SideEffects(func(_ context.Context, _ *pb.Dirs, in map[string]*pb.Value, _ *pb.Outputs) error {
			if in["value"].GetInt() == 1 {
				return errors.New("file x is gone")
			}
			return nil
		})),
		Func("Panicky", noop, SideEffects(func(context.Context, *pb.Dirs, map[string]*pb.Value, *pb.Outputs) error { panic("bug") })),
	}})
	if err != nil {
		t.Fatal(err)
	}
	desc, _ := srv.Describe(context.Background(), &pb.DescribeRequest{})
	flags := map[string][2]bool{}
	for _, s := range desc.Nodes {
		flags[s.Type] = [2]bool{s.SideEffects, s.Verify}
	}
	want := map[string][2]bool{"Plain": {false, false}, "Unchecked": {true, false}, "Checked": {true, true}, "Panicky": {true, true}}
	for typ, w := range want {
		if flags[typ] != w {
			t.Errorf("%s: side_effects, verify = %v, want %v", typ, flags[typ], w)
		}
	}
	for _, tc := range []struct {
		typ    string
		value  int64
		in     bool
		reason string
	}{
		{"Checked", 0, true, ""},
		{"Checked", 1, false, "file x is gone"},
		{"Unchecked", 0, false, "cannot check"},
		{"Plain", 0, false, "cannot check"},
		{"Panicky", 0, false, "panicked"},
	} {
		resp, err := srv.Verify(context.Background(), &pb.VerifyRequest{NodeType: tc.typ, Inputs: map[string]*pb.Value{"value": {Kind: &pb.Value_Int{Int: tc.value}}}})
		if err != nil || resp.InPlace != tc.in || !strings.Contains(resp.Reason, tc.reason) {
			t.Errorf("%s(%d): %v, %v; want in place %v, reason %q", tc.typ, tc.value, resp, err, tc.in, tc.reason)
		}
	}
	if _, err := srv.Verify(context.Background(), &pb.VerifyRequest{NodeType: "Nope"}); err == nil {
		t.Error("an unknown node type verified")
	}
}
