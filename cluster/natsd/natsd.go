// Package natsd runs a NATS server with JetStream inside face0 (`face0 serve
// --nats embedded`), storing under a folder of face0's home, so that a
// single machine needs no other process to accept workers.
package natsd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config of an embedded server.
type Config struct {
	// Listen is host:port for clients; port 0 picks a free one.
	Listen string
	// Dir holds JetStream's files (file storage: memory storage would lose
	// queued jobs and tensors when the server restarts).
	Dir string
	// Token or NKeys (public user keys, "U..."), not both: what clients must
	// show. Neither is allowed only on a loopback address.
	Token string
	NKeys []string
	// Log receives the server's warnings and errors; nil: discarded.
	Log io.Writer
}

// Server is a running embedded NATS server.
type Server struct {
	srv  *server.Server
	self []nats.Option // this process's own credentials
}

// Start starts the server and returns once it accepts clients.
func Start(c Config) (*Server, error) {
	if c.Dir == "" {
		return nil, errors.New("embedded NATS: no storage folder")
	}
	if c.Token != "" && len(c.NKeys) > 0 {
		return nil, errors.New("embedded NATS: give a token or NKeys, not both")
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: listen address %q: %w (want host:port, like 127.0.0.1:4222)", c.Listen, err)
	}
	var port int
	if _, err := fmt.Sscan(portStr, &port); err != nil {
		return nil, fmt.Errorf("embedded NATS: listen address %q: bad port", c.Listen)
	}
	if c.Token == "" && len(c.NKeys) == 0 && !loopback(host) {
		return nil, fmt.Errorf("embedded NATS: refusing to listen on %s without credentials: anyone who reaches it could run nodes as your workers and read their results; give a token (--nats-token or $FACE0_NATS_TOKEN) or NKeys (--nats-nkeys FILE), or listen on 127.0.0.1", c.Listen)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded NATS: storage folder: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 means NATS's default port to the server
	}
	opts := &server.Options{
		ServerName: "face0",
		Host:       host, Port: port,
		JetStream: true, StoreDir: c.Dir,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}
	s := &Server{}
	switch {
	case c.Token != "":
		opts.Authorization = c.Token
		s.self = []nats.Option{nats.Token(c.Token)}
	case len(c.NKeys) > 0:
		for _, k := range c.NKeys {
			if !nkeys.IsValidPublicUserKey(k) {
				return nil, fmt.Errorf("embedded NATS: %q is not an NKey user public key (it starts with U; `nk -gen user -pubout` makes a pair)", k)
			}
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: k})
		}
		// This process connects with a key of its own, made now.
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		pub, _ := kp.PublicKey()
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub})
		s.self = []nats.Option{nats.Nkey(pub, kp.Sign)}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	log := &logger{w: c.Log, fatal: make(chan string, 1)}
	if log.w == nil {
		log.w = io.Discard
	}
	srv.SetLoggerV2(log, false, false, false)
	go srv.Start()
	for deadline := time.Now().Add(30 * time.Second); !srv.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-log.fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("embedded NATS: %s (pick another address with --nats-listen)", msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, fmt.Errorf("embedded NATS: not ready to accept clients on %s within 30 s", c.Listen)
		}
	}
	s.srv = srv
	return s, nil
}

// URL is where clients connect.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Options are the credentials this process connects with.
func (s *Server) Options() []nats.Option { return s.self }

// Shutdown stops the server and waits until it is down.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// ReadNKeys reads public user keys from a file, one a line; blank lines and
// lines starting with # are skipped.
func ReadNKeys(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "SU") {
			return nil, fmt.Errorf("%s holds a seed (SU...), a secret: list the public keys (U...) there, and keep each seed on its worker", file)
		}
		keys = append(keys, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s lists no NKey public keys", file)
	}
	return keys, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logger passes the server's warnings and errors on, and catches the fatal
// one that ends its start (a port in use).
type logger struct {
	w     io.Writer
	fatal chan string
}

func (l *logger) Noticef(string, ...any) {}
func (l *logger) Debugf(string, ...any)  {}
func (l *logger) Tracef(string, ...any)  {}
func (l *logger) Warnf(f string, v ...any) {
	fmt.Fprintf(l.w, "face0: nats: warning: "+f+"\n", v...)
}
func (l *logger) Errorf(f string, v ...any) { fmt.Fprintf(l.w, "face0: nats: "+f+"\n", v...) }
func (l *logger) Fatalf(f string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(f, v...):
	default:
	}
}
