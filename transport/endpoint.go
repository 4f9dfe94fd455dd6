package transport

import (
	"errors"
	"fmt"
	"strings"
)

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
// A bare "host:port" means tcp.
type Endpoint struct {
	// Transport is a registered transport name, e.g. "tcp".
	Transport string
	// Addr is the transport-specific address, e.g. "127.0.0.1:6388" or
	// "[::1]:6388". IPv6 literals are bracketed.
	Addr string
}

// ParseEndpoint parses "transport://address" or a bare "host:port" (tcp).
// The transport name is case-insensitive and must be registered (the error
// then wraps ErrUnknown); the address must be non-empty and, when the
// transport implements AddrValidator, valid for it. Other errors wrap
// ErrEndpoint.
func ParseEndpoint(s string) (Endpoint, error) {
	var e Endpoint
	if scheme, addr, ok := strings.Cut(s, schemeSep); ok {
		e = Endpoint{Transport: strings.ToLower(scheme), Addr: addr}
	} else {
		e = Endpoint{Transport: "tcp", Addr: s}
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
