package procid

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSelfIsAlive(t *testing.T) {
	me := Self()
	if me.PID != os.Getpid() || me.Start == 0 || !me.Alive() {
		t.Fatalf("Self() = %+v, alive %v", me, me.Alive())
	}
	if other := (ID{PID: me.PID, Start: me.Start + 1}); other.Alive() {
		t.Error("an ID with this PID but another start time is alive: a reused PID would keep a dead owner's files")
	}
	if (ID{}).Alive() {
		t.Error("the zero ID is alive")
	}
}

func TestExitedProcessIsDead(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start, _, err := stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := ID{PID: cmd.Process.Pid, Start: start}
	if !id.Alive() {
		t.Fatal("a running child is not alive")
	}
	cmd.Process.Kill()
	// Before Wait the child is a zombie: exited, though its PID is taken.
	for id.Alive() {
		time.Sleep(time.Millisecond)
	}
	cmd.Wait()
	if id.Alive() {
		t.Fatal("a reaped child is alive")
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{"12.345", ID{12, 345}, true},
		{Self().String(), Self(), true},
		{"12", ID{}, false},
		{"0.5", ID{}, false},
		{"-3.5", ID{}, false},
		{"a.b", ID{}, false},
		{"12.x", ID{}, false},
		{"", ID{}, false},
	} {
		got, ok := Parse(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
