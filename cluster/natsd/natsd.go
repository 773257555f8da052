// Package natsd runs a NATS server with JetStream inside face0 (`face0 serve
// --nats embedded`), storing under a folder of face0's home, so that a
// single machine needs no other process to accept workers.
package natsd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
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
	// TLSCert and TLSKey are PEM files of the certificate (with its chain)
	// and key clients see. Given, every client must speak TLS: tokens and
	// tensors then never cross the network in the clear. Workers verify the
	// certificate against their --tls-ca (or the system's CAs).
	TLSCert, TLSKey string
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
	if c.TLSCert != "" || c.TLSKey != "" {
		tc, self, err := serverTLS(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig, opts.TLSTimeout = tc, 5
		s.self = append(s.self, nats.Secure(self))
	}
	switch {
	case c.Token != "":
		opts.Authorization = c.Token
		s.self = append(s.self, nats.Token(c.Token))
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
		s.self = append(s.self, nats.Nkey(pub, kp.Sign))
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	log := &logger{w: c.Log, fatal: make(chan string, 1)}
	if log.w == nil {
		log.w = io.Discard
	}
	if opts.TLSConfig == nil && !loopback(host) {
		fmt.Fprintf(log.w, "face0: warning: embedded NATS listens on %s without TLS: the token and the tensors cross the network unencrypted; give it --nats-tls-cert and --nats-tls-key (docs/scale-out.md), or keep it on a private network\n", c.Listen)
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

// serverTLS loads the server's certificate and key, and makes the TLS
// configuration this process connects to its own server with: it trusts
// exactly that certificate (the server may be reached at 127.0.0.1, a name
// the certificate need not list).
func serverTLS(certFile, keyFile string) (server *tls.Config, self *tls.Config, err error) {
	if certFile == "" || keyFile == "" {
		return nil, nil, errors.New("embedded NATS: TLS needs both a certificate and its key (--nats-tls-cert and --nats-tls-key)")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded NATS: TLS certificate %s with key %s: %w (both PEM files; the key must match the certificate)", certFile, keyFile, err)
	}
	leaf := pair.Certificate[0]
	server = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	self = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, against the one certificate this server serves.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("embedded NATS: the server answering is not this process's own (another certificate)")
			}
			return nil
		},
	}
	return server, self, nil
}
