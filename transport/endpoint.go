package transport

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// DefaultPort is dflockd's port. A bare host given without a port means
// this one.
const DefaultPort = "6388"

// ErrEndpoint is returned (wrapped) by ParseEndpoint for a malformed
// endpoint.
var ErrEndpoint = errors.New("transport: invalid endpoint")

// schemeSep separates the transport name from the address in an endpoint.
const schemeSep = "://"

// An Endpoint names a transport and an address for it. Its text form is
// "transport://address":
//
//	tcp://127.0.0.1:6388
//	tls://[::1]:6388
//	unix:///run/dflockd.sock   (address "/run/dflockd.sock")
//
// Without a scheme, ParseEndpoint reads an address the way a person
// typing it means it: a path means the Unix socket, anything else a host
// of the default transport (tcp), with DefaultPort when the port is
// missing:
//
//	127.0.0.1:6390     tcp://127.0.0.1:6390
//	db1                tcp://db1:6388
//	::1, [::1]         tcp://[::1]:6388
//	/run/dflockd.sock  unix:///run/dflockd.sock
//	./dflockd.sock     unix:///current/dir/dflockd.sock
//
// An address with a scheme is taken as written: "tcp://db1" lacks a port.
type Endpoint struct {
	// Transport is a registered transport name, e.g. "tcp".
	Transport string
	// Addr is the transport-specific address, e.g. "127.0.0.1:6388" or
	// "[::1]:6388". IPv6 literals are bracketed.
	Addr string
}

// ParseEndpoint parses "transport://address" or a bare address (see
// Endpoint: a path is a Unix socket, anything else tcp, port DefaultPort
// when missing). The transport name is case-insensitive and must be
// registered (the error then wraps ErrUnknown); the address must be
// non-empty and, when the transport implements AddrValidator, valid for
// it. Other errors wrap ErrEndpoint.
func ParseEndpoint(s string) (Endpoint, error) { return ParseAddr(s, "tcp") }

// ParseAddr is ParseEndpoint with bare host addresses (no scheme, not a
// path) taken for the transport named bare instead of tcp, e.g. "tls" when
// a client is configured for TLS. A path still means the Unix socket.
func ParseAddr(s, bare string) (Endpoint, error) {
	var e Endpoint
	if scheme, addr, ok := strings.Cut(s, schemeSep); ok {
		e = Endpoint{Transport: strings.ToLower(scheme), Addr: addr}
	} else {
		var err error
		if e, err = bareEndpoint(s, strings.ToLower(bare)); err != nil {
			return Endpoint{}, fmt.Errorf("%w %q: %w", ErrEndpoint, s, err)
		}
	}
	if e.Transport == "" {
		return Endpoint{}, fmt.Errorf("%w %q: missing transport name", ErrEndpoint, s)
	}
	t, err := Lookup(e.Transport) // its error already names the transport
	if err != nil {
		return Endpoint{}, err
	}
	if e.Addr == "" {
		return Endpoint{}, fmt.Errorf("%w %q: empty address", ErrEndpoint, s)
	}
	if v, ok := t.(AddrValidator); ok {
		if err := v.ValidateAddr(e.Addr); err != nil {
			return Endpoint{}, fmt.Errorf("%w %q: %w", ErrEndpoint, s, err)
		}
	}
	return e, nil
}

// LooksLikePath reports whether a bare address is a filesystem path, which
// ParseEndpoint takes for a Unix socket: it contains a '/' or starts with
// a '.'.
func LooksLikePath(s string) bool {
	return strings.Contains(s, "/") || strings.HasPrefix(s, ".")
}

// bareEndpoint reads an address without a scheme: a path is the unix
// transport (made absolute), anything else the transport bare, with
// DefaultPort added to a host without a port.
func bareEndpoint(s, bare string) (Endpoint, error) {
	if s == "" {
		return Endpoint{Transport: bare}, nil // "empty address", below
	}
	if LooksLikePath(s) {
		p, err := filepath.Abs(s)
		if err != nil {
			return Endpoint{}, fmt.Errorf("socket path: %w", err)
		}
		return Endpoint{Transport: "unix", Addr: p}, nil
	}
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"): // [::1]
		s += ":" + DefaultPort
	case strings.Contains(s, ":"):
		if ip := net.ParseIP(s); ip != nil { // ::1, an IPv6 literal
			s = net.JoinHostPort(s, DefaultPort)
		}
	default: // a host name or IPv4 address
		s = net.JoinHostPort(s, DefaultPort)
	}
	return Endpoint{Transport: bare, Addr: s}, nil
}

// UnmarshalText parses b with ParseEndpoint. It lets flag libraries (kong)
// and encoders map text straight into an Endpoint.
func (e *Endpoint) UnmarshalText(b []byte) error {
	parsed, err := ParseEndpoint(string(b))
	if err != nil {
		return err
	}
	*e = parsed
	return nil
}

// MarshalText returns the String form, so that encoding round-trips.
func (e Endpoint) MarshalText() ([]byte, error) {
	return []byte(e.String()), nil
}

// String returns "transport://address".
func (e Endpoint) String() string {
	return e.Transport + schemeSep + e.Addr
}
