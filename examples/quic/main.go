// Command quic opens several dflockd sessions over one QUIC connection:
// each session is a QUIC stream, with its own locks, and they all share
// one TLS 1.3 handshake and one UDP socket. Closing the connection ends
// every session, and the server releases their locks.
//
// From the repository root, write the certificates, run a QUIC server,
// then the example:
//
//	go run ./cmd/dflockd gen-cert --out certs
//	go run ./cmd/dflockd --listen quic://127.0.0.1:6389 \
//	    --tls-cert certs/server.pem --tls-key certs/server-key.pem
//	go run ./examples/quic -addr 127.0.0.1:6389 -ca certs/ca.pem -sessions 3
//
// If the server also has --tls-client-ca certs/ca.pem, add
// -cert certs/client.pem -key certs/client-key.pem.
//
// Flags: -addr (server host:port, UDP), -ca (CA to verify the server
// with), -cert and -key (client certificate; empty = none), -sessions
// (how many sessions to open).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/transport"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quic:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quic", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6389", "server host:port (UDP)")
	caFile := fs.String("ca", "certs/ca.pem", "PEM CA certificate(s) to verify the server with")
	certFile := fs.String("cert", "", "PEM client certificate, for servers with --tls-client-ca (empty = none)")
	keyFile := fs.String("key", "", "PEM key of the client certificate")
	sessions := fs.Int("sessions", 3, "number of sessions to open on the connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := tlsConfig(*caFile, *certFile, *keyFile)
	if err != nil {
		return err
	}

	// One QUIC connection...
	qc, err := transport.DialQUIC(ctx, *addr, transport.Options{TLS: cfg})
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			qc.Close()
		}
	}()
	// ...and one session (stream) per Conn; each takes a lock of its own.
	conns := make([]*client.Conn, *sessions)
	for i := range conns {
		if conns[i], err = client.Dial(ctx, "", client.Options{QUIC: qc}); err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		defer conns[i].Close()
		if _, _, err := conns[i].Acquire(ctx, lockKey(i), 10*time.Second); err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
	}

	st, err := conns[0].Stats(ctx)
	if err != nil {
		return err
	}
	locks, owners := 0, map[uint64]bool{}
	for _, l := range st.Locks {
		if strings.HasPrefix(l.Key, "examples.quic.") {
			locks++
			owners[l.OwnerConnID] = true
		}
	}
	fmt.Fprintf(stdout, "%d sessions on one QUIC connection hold %d locks as %d distinct server connections\n",
		*sessions, locks, len(owners))
	if locks != *sessions || len(owners) != *sessions {
		return fmt.Errorf("want %d locks held by %d distinct connections", *sessions, *sessions)
	}

	// Closing the connection ends every session; the server notices and
	// releases their locks. A fresh connection checks.
	closed = true
	if err := qc.Close(); err != nil {
		return err
	}
	check, err := client.Dial(ctx, "quic://"+*addr, client.Options{TLS: cfg})
	if err != nil {
		return err
	}
	defer check.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := heldLocks(ctx, check)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d locks still held 5s after the connection closed", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(stdout, "connection closed: the server released every session's lock")
	return nil
}

// lockKey is the key session i locks.
func lockKey(i int) string { return fmt.Sprintf("examples.quic.%d", i) }

// heldLocks counts the example's locks the server still lists.
func heldLocks(ctx context.Context, c *client.Conn) (int, error) {
	st, err := c.Stats(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range st.Locks {
		if strings.HasPrefix(l.Key, "examples.quic.") {
			n++
		}
	}
	return n, nil
}

// tlsConfig trusts the CA in caFile and, when certFile is set, presents
// that client certificate. The QUIC transport adds TLS 1.3 and the ALPN
// protocol itself.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: roots}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
