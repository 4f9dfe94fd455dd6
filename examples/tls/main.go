// Command tls talks to dflockd over TLS with a client certificate (mutual
// TLS), using the files `dflockd gen-cert` writes. The server knows the
// client by its certificate's common name, as the stats show.
//
// From the repository root, write the certificates, run a server that
// requires client certificates, then the example:
//
//	go run ./cmd/dflockd gen-cert --out certs
//	go run ./cmd/dflockd --listen tls://127.0.0.1:6389 \
//	    --tls-cert certs/server.pem --tls-key certs/server-key.pem --tls-client-ca certs/ca.pem
//	go run ./examples/tls -addr 127.0.0.1:6389 -ca certs/ca.pem -cert certs/client.pem -key certs/client-key.pem
//
// Against a server without --tls-client-ca (plain TLS), pass -cert= to
// connect without a client certificate.
//
// Flags: -addr (server host:port), -ca (CA to verify the server with),
// -cert and -key (client certificate and key; empty = none),
// -server-name (name to verify instead of the address's host), -lock
// (lock key).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6389", "server host:port")
	caFile := fs.String("ca", "certs/ca.pem", "PEM CA certificate(s) to verify the server with")
	certFile := fs.String("cert", "certs/client.pem", "PEM client certificate (empty = none)")
	keyFile := fs.String("key", "certs/client-key.pem", "PEM key of the client certificate")
	serverName := fs.String("server-name", "", "name to verify the server certificate against (default: the host of -addr)")
	key := fs.String("lock", "examples.tls", "lock key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := tlsConfig(*caFile, *certFile, *keyFile, *serverName)
	if err != nil {
		return err
	}

	// The tls:// scheme picks the transport; a bare host:port with
	// Options.TLS set would too.
	c, err := client.Dial(ctx, "tls://"+*addr, client.Options{TLS: cfg})
	if err != nil {
		return err
	}
	defer c.Close()
	token, lease, err := c.Acquire(ctx, *key, 10*time.Second)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	fmt.Fprintf(stdout, "acquired %q over TLS (lease %ds)\n", *key, lease)

	st, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	me, err := lockOwner(st, *key)
	if err != nil {
		return err
	}
	identity := me.Identity
	if identity == "" {
		identity = "none (the server does not check client certificates)"
	}
	fmt.Fprintf(stdout, "the server sees connection %d over %s, identity %s\n", me.ID, me.Transport, identity)

	if err := c.Release(ctx, *key, token); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	fmt.Fprintln(stdout, "released")
	return nil
}

// tlsConfig trusts the CA in caFile and, when certFile is set, presents
// that client certificate.
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// lockOwner finds the client holding lock key in st.
func lockOwner(st *client.Stats, key string) (client.ClientStat, error) {
	for _, l := range st.Locks {
		if l.Key != key {
			continue
		}
		for _, c := range st.Clients {
			if c.ID == l.OwnerConnID {
				return c, nil
			}
		}
	}
	return client.ClientStat{}, errors.New("the lock's holder is not in the stats")
}
