package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"strings"
	"testing"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

type demoIn struct {
	Image   Image      `face0:"image"`
	Seed    int64      `face0:"seed,min=0,max=100,randomize"`
	W       float64    `face0:"w,min=0,max=20,step=0.5,default=7.5,widget=slider"`
	Prompt  string     `face0:"prompt,multiline,maxlen=500"`
	Mode    string     `face0:"mode,enum=a|b,default=b"`
	Flip    bool       `face0:"flip,default=true"`
	Emb     *Embedding `face0:"embedding"`
	Latent  Tensor     `face0:"latent,type=LATENT,link"`
	Unnamed int
}

type demoOut struct {
	Image Image `face0:"IMAGE"`
	Count int   `face0:"count"`
	UI    Raw   `face0:"images,type=UI,ui"`
}

func demo(ctx *Context, in demoIn) (demoOut, error) {
	if in.Prompt == "fail" {
		return demoOut{}, errors.New("asked to fail")
	}
	if in.Prompt == "panic" {
		panic("oops")
	}
	ctx.Progress(1, 2)
	n := 0
	if in.Emb != nil {
		n = len(in.Emb.Vector)
	}
	return demoOut{Image: in.Image, Count: n + int(in.W*2) + len(in.Mode), UI: value.String("shown")}, nil
}

func TestSpecFromTags(t *testing.T) {
	n := Func("Demo", demo, Category("test"), Choices("mode", func() []string { return []string{"x", "y"} }))
	s := n.Spec()
	if s.Type != "Demo" || s.Category != "test" || !s.Deterministic {
		t.Fatalf("spec header: %+v", s)
	}
	byName := map[string]*pb.PortSpec{}
	for _, p := range s.Inputs {
		byName[p.Name] = p
	}
	schema := func(name string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(byName[name].Schema), &m); err != nil {
			t.Fatalf("%s schema: %v", name, err)
		}
		return m
	}
	tests := []struct {
		port, key string
		want      any
	}{
		{"seed", "maximum", 100.0},
		{"seed", "x-face0-randomize", true},
		{"w", "default", 7.5},
		{"w", "x-face0-step", 0.5},
		{"w", "x-face0-widget", "slider"},
		{"prompt", "maxLength", 500.0},
		{"prompt", "x-face0-multiline", true},
		{"flip", "default", true},
		{"unnamed", "type", "integer"},
	}
	for _, tt := range tests {
		if got := schema(tt.port)[tt.key]; got != tt.want {
			t.Errorf("%s.%s = %v, want %v", tt.port, tt.key, got, tt.want)
		}
	}
	if enum := schema("mode")["enum"].([]any); len(enum) != 2 || enum[0] != "x" || byName["mode"].Type != "ENUM" {
		t.Errorf("dynamic choices not applied: %v", enum)
	}
	if byName["image"].Type != "IMAGE" || byName["embedding"].Type != "FACE_EMBEDDING" || !byName["embedding"].Optional {
		t.Error("port types/optional wrong")
	}
	if !byName["latent"].LinkOnly || byName["latent"].Type != "LATENT" {
		t.Error("link-only tensor wrong")
	}
	if len(s.Outputs) != 2 || s.Outputs[1].Name != "count" {
		t.Errorf("outputs %v (ui outputs must not be ports)", s.Outputs)
	}
}

// With no choices (no model on disk yet) the schema still validates: an empty
// enum, not null, or the node would be dropped from the catalog.
func TestEmptyChoicesStayAnArray(t *testing.T) {
	n := Func("Demo", demo, Choices("mode", func() []string { return nil }))
	for _, p := range n.Spec().Inputs {
		if p.Name == "mode" && !strings.Contains(p.Schema, `"enum":[]`) {
			t.Fatalf("schema %s", p.Schema)
		}
	}
}

func TestFuncExecute(t *testing.T) {
	n := Func("Demo", demo)
	img, _ := value.Images(image.NewNRGBA(image.Rect(0, 0, 2, 2)))
	in := map[string]*pb.Value{"image": img, "seed": value.Int(1), "prompt": value.String("hi"), "unnamed": value.Int(0),
		"latent": value.Float32Tensor("LATENT", []float32{1}, 1)}
	var progress int
	ctx := NewContext(context.Background(), "n1", func(e *pb.ExecuteEvent) error { progress++; return nil })
	out, err := n.Execute(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// w defaults to 7.5 -> 15, mode defaults to "b" -> 1, no embedding.
	if got := out.Values["count"].GetInt(); got != 16 {
		t.Fatalf("count = %d", got)
	}
	if out.Ui["images"].GetString_() != "shown" || progress != 1 {
		t.Fatalf("ui/progress: %v %d", out.Ui, progress)
	}
	in["embedding"] = value.Float32Tensor("FACE_EMBEDDING:s", []float32{1, 2, 3}, 3)
	out, _ = n.Execute(ctx, in)
	if got := out.Values["count"].GetInt(); got != 19 {
		t.Fatalf("with embedding count = %d", got)
	}
	for _, tc := range []struct {
		mutate func(map[string]*pb.Value)
		want   string
	}{
		{func(m map[string]*pb.Value) { delete(m, "image") }, `input "image" is required`},
		{func(m map[string]*pb.Value) { m["seed"] = value.String("x") }, `input "seed"`},
		{func(m map[string]*pb.Value) { m["prompt"] = value.String("fail") }, "asked to fail"},
	} {
		m := map[string]*pb.Value{}
		for k, v := range in {
			m[k] = v
		}
		tc.mutate(m)
		if _, err := n.Execute(ctx, m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
	in["prompt"] = value.String("panic")
	if _, err := runGuarded(ctx, n, in); err == nil || !strings.Contains(err.Error(), "panicked: oops") {
		t.Errorf("panic not turned into an error: %v", err)
	}
}

func TestFuncRejectsBadStructs(t *testing.T) {
	type badField struct {
		C chan int
	}
	type noType struct {
		T Tensor
	}
	type badTag struct {
		X int `face0:"x,bogus"`
	}
	for name, f := range map[string]func(){
		"chan":   func() { Func("A", func(*Context, badField) (demoOut, error) { return demoOut{}, nil }) },
		"tensor": func() { Func("B", func(*Context, noType) (demoOut, error) { return demoOut{}, nil }) },
		"tag":    func() { Func("C", func(*Context, badTag) (demoOut, error) { return demoOut{}, nil }) },
		"nonstruct": func() {
			Func("D", func(*Context, int) (demoOut, error) { return demoOut{}, nil })
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Func accepted a bad struct", name)
				}
			}()
			f()
		}()
	}
	if _, err := NewServer(Pack{Name: "p", Nodes: []Node{Func("Demo", demo), Func("Demo", demo)}}); err == nil {
		t.Error("duplicate node type accepted")
	}
}
