package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ServerFile is where a running `face0 serve` says, inside its home, how to
// reach it: `face0 run` on the same home submits there instead of failing on
// the cache the server holds. It is removed when the server exits; a record
// left by a server that was killed is recognised as stale (no such process,
// or nothing answers at its address) and ignored.
const ServerFile = "server.json"

// serverRecord is ServerFile's content. It holds no secret: a token, if the
// server needs one, comes from the user ($FACE0_TOKEN or --token).
type serverRecord struct {
	PID     int       `json:"pid"`
	URL     string    `json:"url"` // http://host:port, reachable from this machine
	Token   bool      `json:"token_required"`
	Input   string    `json:"input"`  // the server's folders (absolute), so the CLI knows
	Output  string    `json:"output"` // whether it must upload inputs or fetch outputs
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// localURL is the address a client on this machine uses for a listener's
// address: a wildcard host (0.0.0.0, ::) becomes the loopback address.
func localURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// writeServerRecord publishes rec in home (atomically) and returns the
// function that removes it again, if it is still this process's.
func writeServerRecord(home string, rec serverRecord) (remove func(), err error) {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(home, ServerFile)
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() {
		if cur, err := readServerRecord(home); err == nil && cur.PID == rec.PID {
			os.Remove(path)
		}
	}, nil
}

func readServerRecord(home string) (serverRecord, error) {
	var rec serverRecord
	b, err := os.ReadFile(filepath.Join(home, ServerFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", filepath.Join(home, ServerFile), err)
	}
	if rec.PID <= 0 || rec.URL == "" {
		return rec, fmt.Errorf("%s: no pid or url", filepath.Join(home, ServerFile))
	}
	return rec, nil
}

// errNeedsToken is a live server that wants a token the CLI does not have.
var errNeedsToken = errors.New("the server needs its token")

// liveServer finds the server running on home: its record, a process with
// its pid, and an answer at its address (the token is checked when given).
// ok is false when there is none, or the record is stale.
func liveServer(ctx context.Context, home, token string) (rec serverRecord, ok bool, err error) {
	rec, err = readServerRecord(home)
	if err != nil {
		return rec, false, nil
	}
	if !processAlive(rec.PID) {
		return rec, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rec.URL+"/system_stats", nil)
	if err != nil {
		return rec, false, nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rec, false, nil
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return rec, true, nil
	case http.StatusUnauthorized:
		return rec, true, errNeedsToken
	}
	return rec, false, nil
}

// processAlive reports whether a process with this pid exists (EPERM: it
// does, as another user's).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
