package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/face0/face0/cluster"
	"github.com/face0/face0/cluster/dispatch"
	"github.com/face0/face0/cluster/natsd"
	"github.com/face0/face0/internal/app"
	"github.com/face0/face0/plugins/host"
)

// natsFlags are face0 serve's flags for accepting workers.
type natsFlags struct {
	url, listen, token, nkey, nkeys string
	tlsCert, tlsKey, tlsCA          string
	objectTTL                       time.Duration
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats", "", "accept workers (face0 worker) through NATS JetStream: a NATS server's URL, or embedded to run one in this process")
	fs.StringVar(&n.listen, "nats-listen", "127.0.0.1:4222", "with --nats embedded: where workers connect (host:port; another machine's workers need an address they reach, and credentials)")
	fs.StringVar(&n.token, "nats-token", os.Getenv(cluster.EnvToken), "with --nats: the token workers must show (embedded), or this server shows (URL) (default $"+cluster.EnvToken+")")
	fs.StringVar(&n.nkey, "nats-nkey", "", "with --nats URL: this server's NKey seed file")
	fs.StringVar(&n.nkeys, "nats-nkeys", "", "with --nats embedded: a file of the NKey public keys (U...) of the workers allowed, one a line")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "with --nats embedded: a PEM certificate (with its chain); workers then connect with TLS only (see docs/scale-out.md)")
	fs.StringVar(&n.tlsKey, "nats-tls-key", "", "with --nats embedded: the PEM key of --nats-tls-cert")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "with --nats URL: a PEM file of the NATS server's certificate or its CA, to connect with TLS")
	fs.DurationVar(&n.objectTTL, "nats-object-ttl", time.Hour, "how long tensors stay in the NATS object store")
}

// cluster is what serving with workers started: the embedded NATS server,
// the connection, the bus.
type natsCluster struct {
	srv *natsd.Server
	nc  *nats.Conn
	bus *cluster.Bus
	url string
}

// start connects to NATS (starting the embedded server first) and returns
// the app option that makes the engine dispatch to workers.
func (n *natsFlags) start(ctx context.Context, home string) (*natsCluster, func(*host.Manager) (app.Dispatcher, error), error) {
	c := &natsCluster{url: n.url}
	var opts []nats.Option
	auth := cluster.Auth{Token: n.token, NKeySeed: n.nkey, TLSCA: n.tlsCA}
	if n.url == "embedded" {
		if n.tlsCA != "" {
			return nil, nil, errors.New("--nats-tls-ca is for a NATS server elsewhere (--nats URL); the embedded one serves --nats-tls-cert, which workers trust with their --tls-ca")
		}
		cfg := natsd.Config{Listen: n.listen, Dir: filepath.Join(home, "nats"), Token: n.token, Log: os.Stderr, TLSCert: n.tlsCert, TLSKey: n.tlsKey}
		if n.nkeys != "" {
			keys, err := natsd.ReadNKeys(n.nkeys)
			if err != nil {
				return nil, nil, fmt.Errorf("--nats-nkeys: %w", err)
			}
			cfg.NKeys = keys
		}
		srv, err := natsd.Start(cfg)
		if err != nil {
			return nil, nil, err
		}
		c.srv, c.url = srv, srv.URL()
		opts = srv.Options()
		auth = cluster.Auth{}
	} else if n.nkeys != "" {
		return nil, nil, fmt.Errorf("--nats-nkeys lists the workers an embedded NATS server allows; with --nats %s, the NATS server's own configuration does", n.url)
	} else if n.tlsCert != "" || n.tlsKey != "" {
		return nil, nil, fmt.Errorf("--nats-tls-cert and --nats-tls-key are the embedded NATS server's; with --nats %s, the NATS server's own configuration has its certificate (use --nats-tls-ca to trust it)", n.url)
	}
	nc, err := cluster.Connect(c.url, auth, "face0 serve", opts...)
	if err != nil {
		c.close()
		return nil, nil, err
	}
	c.nc = nc
	bus, err := cluster.Open(ctx, nc, &cluster.Settings{ObjectTTL: n.objectTTL})
	if err != nil {
		c.close()
		return nil, nil, err
	}
	c.bus = bus
	id := serverID(home)
	return c, func(local *host.Manager) (app.Dispatcher, error) {
		return dispatch.New(ctx, bus, local, dispatch.Options{ID: id, Log: os.Stderr})
	}, nil
}

func (c *natsCluster) close() {
	if c.nc != nil {
		c.nc.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
	}
}

// serverID names this server on the bus, the same at every start on this
// home: a restarted server withdraws the jobs its previous run left.
func serverID(home string) string {
	abs, err := filepath.Abs(home)
	if err != nil {
		abs = home
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(host + "\x00" + abs))
	return "serve-" + hex.EncodeToString(sum[:6])
}
