package testenv

import (
	"os/exec"
	"syscall"
)

// DieWithTest makes the process cmd starts receive SIGKILL when the test
// binary dies (Linux's parent-death signal), so a server, worker or browser a
// test started never outlives a test binary killed by its timeout, by kill -9
// or by a panic in another goroutine, where no Cleanup runs. It keeps the
// attributes cmd already has (a process group, for example) and returns cmd.
//
// Call it before cmd.Start. The signal is tied to the OS thread that starts
// the process; Go keeps its threads alive, except those of a goroutine that
// locked its thread and ended, which tests do not start processes from.
func DieWithTest(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd
}
