package face0

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/face0/face0/engine"
	"github.com/face0/face0/engine/events"
	"github.com/face0/face0/engine/workflow"
	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/ml/ort"
	"github.com/face0/face0/ml/sdmodel"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// The integration tests run the face0 and image packs as real plugin
// processes (the face0 binary in `plugin <pack>` mode) on tiny models
// generated into a temporary models folder.
var (
	face0Bin  string
	modelsDir string
	ortErr    error // set when onnxruntime is not installed: those tests skip
)

// Model folders the tests share. Bad ones are made by each test.
const (
	tinyModel  = "tiny"
	otherModel = "other" // another embedding space and dimension
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "face0-pack-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if ortErr = ort.Init(); ortErr != nil && !errors.Is(ortErr, ort.ErrNoLibrary) {
		return 0, ortErr
	}
	// With face0memtest the packs can report their memory (memory_test.go).
	if face0Bin, err = testplugin.BuildTags(dir, "./cmd/face0", "face0", "face0memtest"); err != nil {
		return 0, err
	}
	modelsDir = filepath.Join(dir, "models")
	if err := sdmodel.Generate(filepath.Join(modelsDir, tinyModel), sdmodel.TinyConfig()); err != nil {
		return 0, err
	}
	other := sdmodel.TinyConfig()
	other.Name, other.EmbeddingSpace, other.EmbeddingDim, other.Seed = otherModel, "other-64", 64, 2
	if err := sdmodel.Generate(filepath.Join(modelsDir, otherModel), other); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

func needORT(t testing.TB) {
	t.Helper()
	if ortErr != nil {
		t.Skipf("skipping: %v", ortErr)
	}
}

// rig is a host running the face0 and image packs, with an engine over a
// models folder.
type rig struct {
	mgr     *host.Manager
	catalog *engine.Catalog
	engine  *engine.Engine
	dirs    *pb.Dirs
}

func newRig(t testing.TB, models string) *rig {
	t.Helper()
	needORT(t)
	env := []string{ModelsEnv + "=" + models}
	mgr, problems := host.Start(context.Background(), []host.Source{
		{Name: "face0", Path: face0Bin, Args: []string{"plugin", "face0"}, Env: env},
		{Name: "image", Path: face0Bin, Args: []string{"plugin", "image"}, Env: env},
	}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatalf("start packs: %v", problems)
	}
	t.Cleanup(mgr.Close)
	cat, errs := engine.NewCatalog(mgr.Nodes(), mgr.Types())
	if len(errs) > 0 {
		t.Fatalf("catalog: %v", errs)
	}
	out := t.TempDir()
	dirs := &pb.Dirs{Input: out, Output: out, Temp: out, Models: models}
	return &rig{mgr: mgr, catalog: cat, engine: engine.New(mgr, engine.WithDirs(dirs)), dirs: dirs}
}

// run compiles and runs w without the cache (every node executes),
// computing the given outputs (default: the output nodes).
func (r *rig) run(ctx context.Context, t testing.TB, w *workflow.Workflow, outputs ...string) (*engine.Result, *events.Recorder, error) {
	t.Helper()
	plan, err := r.catalog.Compile(w, outputs)
	if err != nil {
		return nil, nil, err
	}
	rec := &events.Recorder{}
	res, err := r.engine.Run(ctx, plan, engine.RunOptions{PromptID: "p", NoCache: true, Sink: rec})
	return res, rec, err
}

// node is one workflow node for the builders below.
type node struct {
	id, typ string
	inputs  map[string]any // literals, or link("node", "output")
}

type linkTo struct{ node, output string }

func link(n, out string) linkTo { return linkTo{n, out} }

func graph(t testing.TB, nodes ...node) *workflow.Workflow {
	t.Helper()
	type jn struct {
		ID     string         `json:"id"`
		Type   string         `json:"type"`
		Inputs map[string]any `json:"inputs"`
	}
	doc := struct {
		Version int  `json:"version"`
		Nodes   []jn `json:"nodes"`
	}{Version: 1}
	for _, n := range nodes {
		in := map[string]any{}
		for k, v := range n.inputs {
			if l, ok := v.(linkTo); ok {
				in[k] = map[string]string{"node": l.node, "output": l.output}
			} else {
				in[k] = v
			}
		}
		doc.Nodes = append(doc.Nodes, jn{n.id, n.typ, in})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := workflow.Parse(b)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return w
}

// samplerGraph is prompt (+ random face) → Face0Sampler, with the sampler's
// literals overridden by opts; face < 0 leaves the face unconnected.
func samplerGraph(t testing.TB, model string, face int, opts map[string]any) *workflow.Workflow {
	in := map[string]any{
		"model": model, "positive": link("prompt", "CONDITIONING"),
		"seed": 42, "steps": 8, "scheduler": "ddim", "w": 7.5, "c": 1, "a": 0,
	}
	nodes := []node{{"prompt", "EncodeText", map[string]any{"model": model, "text": "a photo of a person"}}}
	if face >= 0 {
		nodes = append(nodes, node{"face", "RandomEmbedding", map[string]any{"model": model, "seed": face}})
		in["face_embedding"] = link("face", "embedding")
	}
	for k, v := range opts {
		in[k] = v
	}
	return graph(t, append(nodes, node{"sampler", "Face0Sampler", in})...)
}

// latentOf runs w and returns the sampler's LATENT and its run log line.
func (r *rig) latentOf(t testing.TB, w *workflow.Workflow) ([]float32, []int64, string) {
	t.Helper()
	res, rec, err := r.run(context.Background(), t, w, "sampler")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	data, shape, err := value.AsFloat32(res.Outputs["sampler"].Values["LATENT"])
	if err != nil {
		t.Fatal(err)
	}
	return data, shape, samplerLog(rec)
}

func samplerLog(rec *events.Recorder) string {
	for _, e := range rec.Of(events.Log) {
		if strings.HasPrefix(e.Message, "face0 sampler:") {
			return e.Message
		}
	}
	return ""
}

var logRE = regexp.MustCompile(`(\d+) UNet calls, batch (\d+), branches \[([^\]]*)\], (\S+) in the UNet of (\S+), device (\S+), pid (\d+), go heap free (\d+) KiB`)

// parseLog reads the sampler's debug line: calls, batch rows, branches, pid.
func parseLog(t testing.TB, line string) (calls, batch int, branches string, pid int) {
	t.Helper()
	m := logRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no sampler log line in %q", line)
	}
	calls, _ = strconv.Atoi(m[1])
	batch, _ = strconv.Atoi(m[2])
	pid, _ = strconv.Atoi(m[7])
	return calls, batch, m[3], pid
}

func runOpts(sink events.Sink) engine.RunOptions {
	return engine.RunOptions{PromptID: "p", NoCache: true, Sink: sink}
}
