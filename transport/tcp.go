package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

func init() { Register("tcp", tcpTransport{}) }

// tcpTransport is plain TCP over IPv4 or IPv6. Addresses are "host:port";
// an empty host listens on all interfaces.
type tcpTransport struct{}

var (
	_ Transport     = tcpTransport{}
	_ AddrValidator = tcpTransport{}
)

// Listen implements Transport.
func (tcpTransport) Listen(ctx context.Context, addr string, opts Options) (net.Listener, error) {
	return listenTCP(ctx, addr, opts)
}

// Dial implements Transport.
func (tcpTransport) Dial(ctx context.Context, addr string, opts Options) (net.Conn, error) {
	return tcpDialer(opts).DialContext(ctx, "tcp", addr)
}

// ValidateAddr implements AddrValidator.
func (tcpTransport) ValidateAddr(addr string) error { return validateHostPort(addr) }

// listenTCP binds a TCP listener with the keep-alive from opts. The tls
// transport builds on it.
func listenTCP(ctx context.Context, addr string, opts Options) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: opts.keepAlive()}
	return lc.Listen(ctx, "tcp", addr)
}

// tcpDialer returns a dialer with the keep-alive from opts.
func tcpDialer(opts Options) *net.Dialer {
	return &net.Dialer{KeepAlive: opts.keepAlive()}
}

// validateHostPort checks that addr is "host:port" with a numeric port in
// 0–65535. IPv6 literals must be bracketed; the host may be empty.
func validateHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("missing port")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number in 0-65535", port)
	}
	return nil
}
