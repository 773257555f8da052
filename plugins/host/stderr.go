package host

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// What a plugin writes to stderr (and to stdout after the handshake) reaches
// the host's log line by line, prefixed by the pack's name, within bounds: a
// plugin that floods its stderr must not flood the log or stall the host.
const (
	// maxLine is the longest line forwarded; the rest is cut and counted.
	maxLine = 2048
	// lineRate and lineBurst bound the lines a pack forwards: a burst, then
	// lineRate a second. The lines over the bound are counted and reported.
	lineRate  = 100
	lineBurst = 200
	// tailLines is how many of a process's last lines are kept to explain a
	// crash ("its last words").
	tailLines = 6
)

// logWriter serialises writes to the host's log, which supervision messages
// and every plugin's output share.
type logWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *logWriter) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(l, format, args...)
}

// forwarder is one pack's outlet to the log: the prefix and the rate bound,
// shared by the pack's processes.
type forwarder struct {
	log    *logWriter
	prefix string

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
	notice  *time.Timer // reports dropped lines once the flood pauses
}

func newForwarder(log *logWriter, pack string) *forwarder {
	return &forwarder{log: log, prefix: "plugin " + pack + ": ", tokens: lineBurst}
}

// forward writes one line (without its newline) unless the pack is over its
// bound.
func (f *forwarder) forward(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if !f.last.IsZero() {
		f.tokens = min(lineBurst, f.tokens+now.Sub(f.last).Seconds()*lineRate)
	}
	f.last = now
	if f.tokens < 1 {
		f.dropped++
		if f.notice == nil {
			f.notice = time.AfterFunc(time.Second, f.flushNotice)
		}
		return
	}
	f.tokens--
	f.reportDroppedLocked()
	f.log.printf("%s%s\n", f.prefix, line)
}

func (f *forwarder) flushNotice() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notice = nil
	f.reportDroppedLocked()
}

func (f *forwarder) reportDroppedLocked() {
	if f.dropped == 0 {
		return
	}
	f.log.printf("%s(%d lines of its output dropped: more than %d lines a second)\n", f.prefix, f.dropped, lineRate)
	f.dropped = 0
}

// close reports lines still counted as dropped.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notice != nil {
		f.notice.Stop()
		f.notice = nil
	}
	f.reportDroppedLocked()
}

// lineSink turns one output stream of one process (chunks that need not end
// on a line boundary) into lines for the forwarder, and keeps the last few
// for crash reports.
type lineSink struct {
	f    *forwarder
	tail *tail

	mu  sync.Mutex
	buf []byte
	cut int // bytes of the current line beyond maxLine
}

var _ io.Writer = (*lineSink)(nil)

func (s *lineSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		room := maxLine - len(s.buf)
		if room >= len(chunk) {
			s.buf = append(s.buf, chunk...)
		} else {
			s.buf = append(s.buf, chunk[:max(room, 0)]...)
			s.cut += len(chunk) - max(room, 0)
		}
		if i < 0 {
			break
		}
		s.emitLocked()
		b = b[i+1:]
	}
	return n, nil
}

func (s *lineSink) emitLocked() {
	line := strings.TrimRight(string(s.buf), "\r")
	if s.cut > 0 {
		line += fmt.Sprintf(" … (%d more bytes of this line cut)", s.cut)
	}
	s.buf, s.cut = s.buf[:0], 0
	s.tail.add(line)
	s.f.forward(line)
}

// flush forwards a last line that had no newline.
func (s *lineSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 || s.cut > 0 {
		s.emitLocked()
	}
}

// tail keeps a process's last lines and its first panic line.
type tail struct {
	mu    sync.Mutex
	lines []string
	panic string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panic == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		t.panic = line
	}
	if strings.TrimSpace(line) == "" {
		return
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

// words says what the process said last: its panic if it panicked, else its
// last line ("" when it said nothing).
func (t *tail) words() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panic != "" {
		return t.panic
	}
	if len(t.lines) > 0 {
		return t.lines[len(t.lines)-1]
	}
	return ""
}
