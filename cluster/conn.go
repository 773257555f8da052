package cluster

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is how a client proves itself to the NATS server: a shared token, or
// an NKey (the seed file of a user key whose public key the server lists).
// Neither: the server must allow anonymous clients.
type Auth struct {
	Token    string
	NKeySeed string // path of a seed file ("SU...")
	// TLSCA is a PEM file of the certificates that may sign the NATS
	// server's (its own certificate, when self-signed). Given, the
	// connection must be TLS; without it, a server that requires TLS is
	// verified against the system's CAs.
	TLSCA string
}

// EnvToken holds the NATS token when no flag gives it.
const EnvToken = "FACE0_NATS_TOKEN"

func (a Auth) options() ([]nats.Option, error) {
	var tlsOpts []nats.Option
	if a.TLSCA != "" {
		pem, err := os.ReadFile(a.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate (it should hold the NATS server's certificate, or the CA that signed it)", a.TLSCA)
		}
		tlsOpts = append(tlsOpts, nats.RootCAs(a.TLSCA))
	}
	creds, err := a.credentials()
	return append(tlsOpts, creds...), err
}

func (a Auth) credentials() ([]nats.Option, error) {
	switch {
	case a.Token != "" && a.NKeySeed != "":
		return nil, errors.New("give either a NATS token or an NKey seed, not both")
	case a.Token != "":
		return []nats.Option{nats.Token(a.Token)}, nil
	case a.NKeySeed != "":
		if _, err := os.Stat(a.NKeySeed); err != nil {
			return nil, fmt.Errorf("NKey seed file: %w", err)
		}
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("NKey seed file %s: %w (it should hold a user seed, starting with SU, as `nk -gen user` writes)", a.NKeySeed, err)
		}
		return []nats.Option{opt}, nil
	}
	return nil, nil
}

// Connect connects to the NATS server at url as name. Once connected, the
// connection reconnects for ever: a NATS server that restarts is found
// again, and what was published meanwhile is sent then. A server that
// refuses the credentials gives an error that says which flag to check; a
// server that cannot be reached gives ErrUnreachable (wrapped).
func Connect(url string, auth Auth, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := auth.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return min(time.Duration(attempts)*100*time.Millisecond, 2*time.Second)
		}),
		nats.Timeout(5*time.Second),
		// A dead server is noticed within a few seconds, not the default 4 min.
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ReconnectBufSize(64<<20),
	)
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, explainConnect(url, auth, err)
	}
	return nc, nil
}

// ErrUnreachable means no NATS server answered at the address.
var ErrUnreachable = errors.New("no NATS server answers there")

func explainConnect(url string, auth Auth, err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(msg), "authorization violation"):
		how := "it needs credentials: pass --token (or $" + EnvToken + ") or --nkey SEEDFILE"
		switch {
		case auth.Token != "":
			how = "check the token (--token, $" + EnvToken + "): it is not the one the server was started with"
		case auth.NKeySeed != "":
			how = "check the NKey seed (--nkey " + auth.NKeySeed + "): its public key is not among those the server allows"
		}
		return fmt.Errorf("the NATS server at %s refused the credentials (authorization violation): %s; see docs/scale-out.md", url, how)
	case errors.Is(err, nats.ErrNkeysNotSupported):
		return fmt.Errorf("the NATS server at %s does not take NKeys: use --token instead", url)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("the NATS server at %s does not use TLS, and --tls-ca asks for it: give the server a certificate (face0 serve --nats-tls-cert/--nats-tls-key), or drop --tls-ca", url)
	case errors.As(err, new(x509.UnknownAuthorityError)) || strings.Contains(msg, "certificate signed by unknown authority"):
		how := "pass --tls-ca FILE (face0 serve: --nats-tls-ca FILE): the server's certificate (when self-signed) or the CA that signed it"
		if auth.TLSCA != "" {
			how = "--tls-ca " + auth.TLSCA + " holds neither the server's certificate nor the CA that signed it"
		}
		return fmt.Errorf("the NATS server at %s uses TLS with a certificate this process does not trust: %s; see docs/scale-out.md", url, how)
	case errors.As(err, new(x509.HostnameError)) || strings.Contains(msg, "certificate is valid for"):
		return fmt.Errorf("the NATS server at %s has a certificate for other names (%v): connect by a name or address it lists", url, err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("cannot reach the NATS server at %s: %w (is face0 serve --nats running there, and is the port open?)", url, ErrUnreachable)
	}
	return fmt.Errorf("connect to NATS at %s: %w", url, err)
}

// NewNKey makes a new NKey user key pair, writes its seed (the secret) to
// file, readable by its owner only, and returns the public key, which the
// NATS server lists (face0 serve --nats-nkeys). It never replaces a file:
// a seed already there may be one the server allows.
func NewNKey(file string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("%s exists already: it may hold a key a server allows; pick another name, or remove it first", file)
	}
	if err != nil {
		return "", err
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		os.Remove(file)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return "", err
	}
	return pub, nil
}
