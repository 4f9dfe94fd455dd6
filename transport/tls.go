package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// ErrNoTLSConfig is returned (wrapped) by a TLS-based Listen when
// Options.TLS is nil or carries no certificate.
var ErrNoTLSConfig = errors.New("transport: tls config with a certificate required")

// MinTLSVersion is the lowest TLS version any transport negotiates. Configs
// with a lower (or unset) MinVersion are raised to it.
const MinTLSVersion = tls.VersionTLS12

func init() { Register("tls", tlsTransport{}) }

// tlsTransport is TLS over TCP. Addresses are "host:port" as for tcp.
// Accepted conns are *tls.Conn and handshake lazily on first Read or Write,
// so a slow client never blocks Accept; they implement TLSConner.
type tlsTransport struct{}

var (
	_ Transport     = tlsTransport{}
	_ AddrValidator = tlsTransport{}
)

// Listen implements Transport. opts.TLS must be set and hold a certificate.
func (tlsTransport) Listen(ctx context.Context, addr string, opts Options) (net.Listener, error) {
	cfg, err := serverTLSConfig(opts.TLS)
	if err != nil {
		return nil, err
	}
	l, err := listenTCP(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, cfg), nil
}

// Dial implements Transport. It completes the handshake within ctx. A nil
// opts.TLS means the system roots; an empty ServerName is taken from addr.
func (tlsTransport) Dial(ctx context.Context, addr string, opts Options) (net.Conn, error) {
	d := tls.Dialer{NetDialer: tcpDialer(opts), Config: clientTLSConfig(opts.TLS)}
	return d.DialContext(ctx, "tcp", addr)
}

// ValidateAddr implements AddrValidator.
func (tlsTransport) ValidateAddr(addr string) error { return validateHostPort(addr) }

// serverTLSConfig checks that cfg can serve and returns a clone with the
// minimum version enforced. The caller's config is never modified.
func serverTLSConfig(cfg *tls.Config) (*tls.Config, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: Options.TLS is nil", ErrNoTLSConfig)
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, fmt.Errorf("%w: Options.TLS has no certificate", ErrNoTLSConfig)
	}
	return withMinVersion(cfg), nil
}

// clientTLSConfig returns a clone of cfg (or a fresh config) with the
// minimum version enforced.
func clientTLSConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	return withMinVersion(cfg)
}

// withMinVersion clones cfg and raises MinVersion to MinTLSVersion.
func withMinVersion(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if c.MinVersion < MinTLSVersion {
		c.MinVersion = MinTLSVersion
	}
	return c
}
