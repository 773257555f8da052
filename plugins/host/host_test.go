package host_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/face0/face0/internal/testplugin"
	"github.com/face0/face0/plugins/host"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

var binDir string

func TestMain(m *testing.M) {
	if bin := os.Getenv(envKilledHost); bin != "" {
		runHostUntilKilled(bin)
		return
	}
	var err error
	binDir, err = os.MkdirTemp("", "face0-host-test-")
	if err == nil {
		_, err = testplugin.TestPack(binDir)
	}
	if err == nil {
		_, err = testplugin.Build(binDir, "./examples/plugins/imagefx", "imagefx")
	}
	if err == nil {
		_, err = testplugin.Hostile(binDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

func TestDiscoverAndDescribe(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"testpack", "imagefx"} {
		data, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), data, 0o755)
	}
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not executable"), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("#!/bin/sh\n"), 0o755)
	srcs, err := host.Discover(dir)
	if err != nil || len(srcs) != 2 {
		t.Fatalf("Discover = %v, %v; want the two executables", srcs, err)
	}
	var log bytes.Buffer
	m, problems := host.Start(context.Background(), srcs, host.WithLog(&log))
	defer m.Close()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	types := map[string]string{}
	for _, d := range m.Nodes() {
		types[d.Spec.Type] = d.Pack
		if !strings.Contains(d.Build, "+") {
			t.Errorf("%s: build %q lacks the binary hash", d.Spec.Type, d.Build)
		}
	}
	if types["Invert"] != "imagefx" || types["Add"] != "testpack" {
		t.Fatalf("nodes: %v", types)
	}
	if srcs, _ := host.Discover(filepath.Join(dir, "missing")); srcs != nil {
		t.Fatal("a missing plugins folder should hold no plugins")
	}
}

func TestBrokenPluginIsReportedNotFatal(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "notaplugin")
	os.WriteFile(script, []byte("#!/bin/sh\necho hello\nexit 1\n"), 0o755)
	var log bytes.Buffer
	m, problems := host.Start(context.Background(), []host.Source{
		{Name: "notaplugin", Path: script},
		{Name: "testpack", Path: filepath.Join(binDir, "testpack")},
	}, host.WithLog(&log))
	defer m.Close()
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "notaplugin") {
		t.Fatalf("problems = %v, want one naming notaplugin", problems)
	}
	if len(m.Nodes()) == 0 {
		t.Fatal("the good plugin was dropped with the bad one")
	}
}

func TestDuplicateNodeTypeKeepsFirst(t *testing.T) {
	tp := filepath.Join(binDir, "testpack")
	m, problems := host.Start(context.Background(), []host.Source{{Name: "one", Path: tp}, {Name: "two", Path: tp}})
	defer m.Close()
	if len(problems) == 0 || !strings.Contains(problems[0].Error(), "already provided") {
		t.Fatalf("problems = %v", problems)
	}
}

func TestExecuteUnknownNode(t *testing.T) {
	m, _ := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}})
	defer m.Close()
	_, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Nope"}, func(*pb.ExecuteEvent) {})
	if err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("err = %v", err)
	}
	// A bad input value reaches the node as a clear error, not a crash.
	_, err = m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Add", Inputs: map[string]*pb.Value{"a": value.String("x")}}, func(*pb.ExecuteEvent) {})
	if err == nil || !strings.Contains(err.Error(), `input "a"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRestartAfterCrash(t *testing.T) {
	var log bytes.Buffer
	m, _ := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}}, host.WithLog(&log))
	defer m.Close()
	for i := 0; i < 3; i++ {
		_, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Exit"}, func(*pb.ExecuteEvent) {})
		if err == nil || !strings.Contains(err.Error(), "crashed") {
			t.Fatalf("crash %d: err = %v", i, err)
		}
		out, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Add", Inputs: map[string]*pb.Value{"a": value.Int(2), "b": value.Int(3)}}, func(*pb.ExecuteEvent) {})
		if err != nil || out.Values["INT"].GetInt() != 5 {
			t.Fatalf("after crash %d: %v %v", i, out, err)
		}
	}
}

// A node that ignores cancellation is stopped by its plugin exiting after the
// grace period; the next call gets a fresh process.
func TestStubbornNodeIsStopped(t *testing.T) {
	m, _ := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack"), Env: []string{"FACE0_CANCEL_GRACE=300ms"}}}, host.WithLog(io.Discard))
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := m.Execute(ctx, &pb.ExecuteRequest{NodeType: "Stubborn"}, func(*pb.ExecuteEvent) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
		errc <- err
	}()
	pid := func() int64 {
		out, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Pid"}, func(*pb.ExecuteEvent) {})
		if err != nil {
			return -1
		}
		return out.Values["INT"].GetInt()
	}
	<-started
	before := pid()
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled call returned no error")
	}
	// After the grace period the process has exited; the next call starts a
	// fresh one.
	// A guard against a process that is never stopped; a loaded machine
	// takes its time for the grace period, the exit and the restart.
	deadline := time.Now().Add(time.Minute)
	for {
		if p := pid(); p > 0 && p != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still serving a minute after cancelling a stubborn node", before)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSocketsAreRemoved: a plugin that crashes, or is killed when the host
// closes, leaves no unix socket behind in the temporary folder.
func TestSocketsAreRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	m, problems := host.Start(context.Background(), []host.Source{{Name: "testpack", Path: filepath.Join(binDir, "testpack")}}, host.WithLog(io.Discard))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	for range 2 {
		if _, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Exit"}, func(*pb.ExecuteEvent) {}); err == nil {
			t.Fatal("Exit did not crash")
		}
		if _, err := m.Execute(context.Background(), &pb.ExecuteRequest{NodeType: "Add", Inputs: map[string]*pb.Value{"a": value.Int(2), "b": value.Int(3)}}, func(*pb.ExecuteEvent) {}); err != nil {
			t.Fatal(err)
		}
	}
	// The crashed processes' socket folders are removed in the background
	// once they are reaped: wait for that before counting.
	var live []os.DirEntry
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		live, _ = os.ReadDir(tmp)
		if len(live) <= 1 || time.Now().After(deadline) {
			break
		}
	}
	m.Close()
	left, _ := os.ReadDir(tmp)
	var names []string
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "plugin") || strings.HasPrefix(e.Name(), "face0-plugin-") {
			names = append(names, e.Name())
		}
	}
	if len(names) > 0 {
		t.Errorf("left in the temporary folder after two crashes and Close: %v (while running: %d entries)", names, len(live))
	}
	if len(live) != 1 {
		t.Errorf("%d entries in the temporary folder while one plugin runs, want its socket folder only", len(live))
	}
}
