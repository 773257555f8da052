package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// signalContext is cancelled by the first SIGINT or SIGTERM; caught tells
// which one it was (nil before), so that a command stopped by a signal can
// exit as shells expect: 128 + the signal's number (130 for Ctrl-C).
func signalContext() (ctx context.Context, caught func() os.Signal, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			got.Store(s)
			cancel()
		case <-done:
		}
	}()
	caught = func() os.Signal {
		s, _ := got.Load().(os.Signal)
		return s
	}
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			signal.Stop(ch)
			close(done)
			cancel()
		}
	}
	return ctx, caught, stop
}

// exitError ends the process with code after printing msg (when not empty).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.msg
}

// exitCode is a usage error or the like whose message was printed already.
func exitCode(code int) error { return &exitError{code: code} }

// stoppedBy is the error of a command that a signal stopped: its message,
// and the exit status 128 + the signal's number (SIGINT 130, SIGTERM 143).
func stoppedBy(sig os.Signal, msg string) error {
	code := 130
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s)
	}
	return &exitError{code: code, msg: msg}
}

// exitStatus is the process exit status for err: an exitError's code, else 1.
func exitStatus(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
