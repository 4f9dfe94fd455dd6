// Package transport makes the byte streams dflockd runs over.
//
// A Transport knows how to listen and dial for one scheme ("tcp", "tls", ...)
// and hands back plain net.Listener and net.Conn values, so nothing above
// this package ever branches on the transport in use. Transports register
// themselves by name from init functions; Lookup and Names expose the
// registry, and an Endpoint ("tls://[::1]:6388") pairs a registered name
// with an address.
//
// Adding a transport means adding one file with an init function that calls
// Register, plus a setup entry in the conformance test; nothing else changes.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultKeepAlive is the TCP keep-alive period used when
// Options.KeepAlive is zero.
const DefaultKeepAlive = 15 * time.Second

// DefaultUnixMode is the permission given to a Unix socket file when
// Options.UnixMode is zero: owner and group may connect.
const DefaultUnixMode fs.FileMode = 0o660

// DefaultQUICIdleTimeout is the QUIC idle timeout used when
// Options.QUICIdleTimeout is zero.
const DefaultQUICIdleTimeout = 30 * time.Second

// DefaultQUICKeepAlive is the QUIC keep-alive period used when
// Options.QUICKeepAlive is zero.
const DefaultQUICKeepAlive = 10 * time.Second

// ALPN is the TLS application protocol negotiated by the quic transport.
// Both sides offer only this protocol, so a QUIC peer speaking anything
// else fails the handshake.
const ALPN = "dflockd"

// ErrUnknown is returned (wrapped) by Lookup, ParseEndpoint, Listen and Dial
// for a transport name that is not registered.
var ErrUnknown = errors.New("transport: unknown")

// ErrAddrInUse is returned (wrapped) by a unix Listen when the socket path
// belongs to a live server: something accepted a connection on it. The file
// is left in place.
var ErrAddrInUse = errors.New("transport: address in use by a live server")

// ErrDisabled is returned (wrapped) by a transport that is registered but
// was left out of this build, e.g. quic when built with the noquic tag.
var ErrDisabled = errors.New("transport: disabled in this build")

// A Transport creates byte-stream listeners and connections.
// Implementations are stateless and safe for concurrent use; all state
// lives in the listeners and connections they return, which the caller owns.
type Transport interface {
	// Listen binds addr and returns a listener. ctx bounds the bind only,
	// not the life of the listener. Closing the listener must unblock a
	// pending Accept, which then returns an error matching net.ErrClosed.
	Listen(ctx context.Context, addr string, opts Options) (net.Listener, error)
	// Dial connects to addr. ctx bounds connection establishment,
	// including any handshake; it does not affect the returned conn.
	Dial(ctx context.Context, addr string, opts Options) (net.Conn, error)
}

// An AddrValidator is a Transport that can check the syntax of an address
// before anything is bound or dialled. ParseEndpoint uses it when the
// endpoint's transport implements it. Address-based transports check
// "host:port"; path-based ones (Unix sockets) check paths.
type AddrValidator interface {
	ValidateAddr(addr string) error
}

// Options configure one Listen or Dial. The zero value is usable for every
// transport that does not need TLS.
type Options struct {
	// TLS is the TLS configuration. Listen on "tls" and "quic" requires
	// it, with at least one certificate (or GetCertificate /
	// GetConfigForClient); Dial uses the system roots and the host from the
	// address when it is nil. Transports clone it and raise MinVersion to
	// TLS 1.2 if it is lower ("quic" to TLS 1.3, and it sets NextProtos to
	// ALPN). Ignored by "tcp" and "unix".
	TLS *tls.Config
	// KeepAlive is the TCP keep-alive period for "tcp" and "tls"
	// (0 = DefaultKeepAlive, negative disables keep-alives).
	KeepAlive time.Duration
	// UnixMode is the permission of a socket file created by a "unix"
	// Listen (0 = DefaultUnixMode, 0o660). Only the permission bits are
	// used.
	UnixMode fs.FileMode
	// QUICIdleTimeout closes a QUIC connection that has been idle this
	// long (0 = DefaultQUICIdleTimeout, 30s). The effective value is the
	// smaller of the two peers' settings.
	QUICIdleTimeout time.Duration
	// QUICKeepAlive is the QUIC keep-alive period (0 =
	// DefaultQUICKeepAlive, 10s; negative disables keep-alives). QUIC never
	// sends keep-alives more often than half the idle timeout.
	QUICKeepAlive time.Duration
}

// unixMode returns the effective socket file permission.
func (o Options) unixMode() fs.FileMode {
	if o.UnixMode == 0 {
		return DefaultUnixMode
	}
	return o.UnixMode.Perm()
}

// quicIdleTimeout returns the effective QUIC idle timeout.
func (o Options) quicIdleTimeout() time.Duration {
	if o.QUICIdleTimeout <= 0 {
		return DefaultQUICIdleTimeout
	}
	return o.QUICIdleTimeout
}

// quicKeepAlive returns the effective QUIC keep-alive period; 0 means
// disabled.
func (o Options) quicKeepAlive() time.Duration {
	switch {
	case o.QUICKeepAlive == 0:
		return DefaultQUICKeepAlive
	case o.QUICKeepAlive < 0:
		return 0
	}
	return o.QUICKeepAlive
}

// keepAlive returns the effective keep-alive period (negative = disabled).
func (o Options) keepAlive() time.Duration {
	if o.KeepAlive == 0 {
		return DefaultKeepAlive
	}
	return o.KeepAlive
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Transport{}
)

// Register makes t available under name. It is meant to be called from init
// functions. It panics if name is not a lowercase scheme name (a letter
// followed by letters or digits), if t is nil, or if name is already taken.
func Register(name string, t Transport) {
	if !validName(name) {
		panic(fmt.Sprintf("transport: Register: invalid name %q (want [a-z][a-z0-9]*)", name))
	}
	if t == nil {
		panic(fmt.Sprintf("transport: Register: nil transport for %q", name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("transport: Register: %q registered twice", name))
	}
	registry[name] = t
}

// validName reports whether name is a letter followed by letters or digits,
// all lowercase ASCII, so that it is also a valid URL scheme.
func validName(name string) bool {
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Lookup returns the transport registered under name. The error for an
// unknown name wraps ErrUnknown and lists the known names.
func Lookup(name string) (Transport, error) {
	registryMu.RLock()
	t, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	return t, nil
}

// Names returns the registered transport names in sorted order.
func Names() []string {
	registryMu.RLock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	registryMu.RUnlock()
	slices.Sort(names)
	return names
}

// Listen looks up e.Transport and listens on e.Addr. Errors name the
// endpoint.
func Listen(ctx context.Context, e Endpoint, opts Options) (net.Listener, error) {
	t, err := Lookup(e.Transport)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", e, err)
	}
	l, err := t.Listen(ctx, e.Addr, opts)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", e, err)
	}
	return l, nil
}

// Dial looks up e.Transport and dials e.Addr. Errors name the endpoint.
func Dial(ctx context.Context, e Endpoint, opts Options) (net.Conn, error) {
	t, err := Lookup(e.Transport)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", e, err)
	}
	c, err := t.Dial(ctx, e.Addr, opts)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", e, err)
	}
	return c, nil
}

// TLSConner is implemented by connections that expose a TLS handshake
// (*crypto/tls.Conn does). Callers detect it with a type assertion, e.g. to
// read client certificates. The state is complete only after the handshake,
// which for accepted conns happens on first Read or Write (or an explicit
// HandshakeContext).
type TLSConner interface {
	ConnectionState() tls.ConnectionState
}

// Cred is the identity of the process at the other end of a Unix socket,
// as the kernel recorded it when the connection (or, for the listening
// side, the listener) was set up.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// PeerCreder is implemented by conns that can report their peer's process
// credentials: the unix transport's conns, via SO_PEERCRED on Linux (other
// systems return an error). Callers detect it with a type assertion.
type PeerCreder interface {
	PeerCred() (Cred, error)
}
