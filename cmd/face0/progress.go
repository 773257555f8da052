package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/face0/face0/engine/events"
)

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// logLines prints one plain line per event of interest, for logs and pipes.
type logLines struct {
	mu  sync.Mutex
	w   io.Writer
	pct map[string]int64
}

func newLogLines(w io.Writer) *logLines { return &logLines{w: w, pct: map[string]int64{}} }

func (l *logLines) Emit(e events.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Type {
	case events.Cached:
		fmt.Fprintf(l.w, "cached: %s\n", strings.Join(e.Nodes, ", "))
	case events.Executing:
		fmt.Fprintf(l.w, "running %s (%s)\n", e.Node, e.NodeType)
	case events.Progress:
		// At most one line per 10% so logs stay readable.
		if e.Max > 0 {
			p := e.Value * 10 / e.Max
			if p != l.pct[e.Node] || e.Value == e.Max {
				l.pct[e.Node] = p
				fmt.Fprintf(l.w, "  %s: %d/%d\n", e.Node, e.Value, e.Max)
			}
		}
	case events.Log:
		fmt.Fprintf(l.w, "  %s [%s] %s\n", e.Node, strings.ToLower(e.Level), e.Message)
	case events.Executed:
		if !e.FromCache {
			fmt.Fprintf(l.w, "done %s (%s) in %s\n", e.Node, e.NodeType, e.Duration.Round(time.Millisecond))
		}
	case events.Error:
		fmt.Fprintf(l.w, "failed %s (%s): %s\n", e.Node, e.NodeType, e.Err)
	case events.Interrupted:
		fmt.Fprintf(l.w, "interrupted; completed: %s\n", strings.Join(e.Completed, ", "))
	case events.Success:
		fmt.Fprintln(l.w, "success")
	}
}

// bars draws a line per running node with its step progress, redrawn in place.
type bars struct {
	mu      sync.Mutex
	w       io.Writer
	order   []string
	lines   map[string]string
	drawn   int
	last    time.Time
	closed  bool
	pending bool
}

func newBars(w io.Writer) *bars {
	return &bars{w: w, lines: map[string]string{}}
}

func (b *bars) set(node, line string) {
	if _, ok := b.lines[node]; !ok {
		b.order = append(b.order, node)
	}
	b.lines[node] = line
}

func bar(value, max int64, width int) string {
	if max <= 0 {
		return strings.Repeat("·", width)
	}
	n := int(value * int64(width) / max)
	n = min(max64(0, n), width)
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}

func max64(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func (b *bars) Emit(e events.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	label := fmt.Sprintf("%-12s %-14s", e.Node, e.NodeType)
	force := false
	switch e.Type {
	case events.Cached:
		for _, n := range e.Nodes {
			b.set(n, fmt.Sprintf("%-12s %-14s cached", n, ""))
		}
		force = true
	case events.Executing:
		b.set(e.Node, label+" "+bar(0, 0, 30))
		force = true
	case events.Progress:
		b.set(e.Node, fmt.Sprintf("%s %s %d/%d", label, bar(e.Value, e.Max, 30), e.Value, e.Max))
	case events.Executed:
		if !e.FromCache {
			b.set(e.Node, fmt.Sprintf("%s done in %s", label, e.Duration.Round(time.Millisecond)))
			force = true
		}
	case events.Error:
		b.set(e.Node, label+" FAILED: "+firstLine(e.Err))
		force = true
	case events.Log:
		b.clear()
		fmt.Fprintf(b.w, "%s: %s\n", e.Node, e.Message)
		force = true
	default:
		return
	}
	if force || time.Since(b.last) > 80*time.Millisecond {
		b.redraw()
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (b *bars) clear() {
	if b.drawn > 0 {
		fmt.Fprintf(b.w, "\x1b[%dA\x1b[J", b.drawn)
		b.drawn = 0
	}
}

func (b *bars) redraw() {
	b.clear()
	for _, n := range b.order {
		fmt.Fprintf(b.w, "\x1b[2K%s\n", b.lines[n])
	}
	b.drawn = len(b.order)
	b.last = time.Now()
}

func (b *bars) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.redraw()
		b.closed = true
	}
}
