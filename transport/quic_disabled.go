//go:build noquic

package transport

import (
	"context"
	"fmt"
	"net"
)

func init() { Register("quic", quicDisabled{}) }

// errQUICDisabled is what every quic entry point returns in this build.
var errQUICDisabled = fmt.Errorf("quic: %w (built with the noquic tag)", ErrDisabled)

// quicDisabled keeps the "quic" name registered in builds without QUIC, so
// that endpoints still parse and fail with ErrDisabled instead of
// ErrUnknown.
type quicDisabled struct{}

var (
	_ Transport     = quicDisabled{}
	_ AddrValidator = quicDisabled{}
)

// ValidateAddr implements AddrValidator.
func (quicDisabled) ValidateAddr(addr string) error { return validateHostPort(addr) }

// Listen implements Transport; it always fails with ErrDisabled.
func (quicDisabled) Listen(context.Context, string, Options) (net.Listener, error) {
	return nil, errQUICDisabled
}

// Dial implements Transport; it always fails with ErrDisabled.
func (quicDisabled) Dial(context.Context, string, Options) (net.Conn, error) {
	return nil, errQUICDisabled
}

// QUICSession is unavailable in this build: DialQUIC always fails with
// ErrDisabled.
type QUICSession struct{}

// DialQUIC always fails with ErrDisabled in this build.
func DialQUIC(context.Context, string, Options) (*QUICSession, error) {
	return nil, errQUICDisabled
}

// OpenConn always fails with ErrDisabled in this build.
func (*QUICSession) OpenConn(context.Context) (net.Conn, error) {
	return nil, errQUICDisabled
}

// Close always fails with ErrDisabled in this build.
func (*QUICSession) Close() error { return errQUICDisabled }
