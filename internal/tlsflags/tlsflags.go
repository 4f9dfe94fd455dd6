// Package tlsflags turns the TLS client flags shared by dflockctl and
// bench (--tls-ca, --tls-cert, --tls-key, --tls-server-name) into a
// tls.Config.
package tlsflags

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Client holds the flag values; empty fields are unset.
type Client struct {
	CA         string // PEM file of CA certificates (default: system roots)
	Cert, Key  string // PEM client certificate and key, for mutual TLS
	ServerName string // name to verify the server certificate against
}

// Set reports whether any flag is set.
func (c Client) Set() bool { return c.CA != "" || c.Cert != "" || c.ServerName != "" }

// Config returns the client configuration (TLS 1.2 or later), or nil when
// no flag is set. Errors name the flag at fault.
func (c Client) Config() (*tls.Config, error) {
	if !c.Set() {
		return nil, nil
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key must be given together")
	}
	cfg := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		b, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", c.CA)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
