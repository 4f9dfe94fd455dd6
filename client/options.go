package client

import (
	"crypto/tls"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// DefaultDialTimeout bounds Dial, including the TLS and auth handshakes,
// when Options.DialTimeout is zero.
const DefaultDialTimeout = 10 * time.Second

// MaxResponseLine is the longest response line a Conn accepts, in bytes.
// Only stats answers come close to it.
const MaxResponseLine = 1 << 20

// Options configure a connection. The zero value dials plain TCP with
// the default timeout and no authentication. Dial copies the struct; later
// changes do not affect an open Conn.
type Options struct {
	// Transport names the transport explicitly ("tcp", "tls", "unix",
	// "quic", or any other registered name). Empty means: the scheme of
	// the address when it has one ("unix:///run/d.sock"), else "tls" when
	// TLS is set, else "tcp". An address with a scheme that differs from
	// Transport is an error.
	Transport string
	// TLS configures the "tls" and "quic" transports (nil = system roots
	// and the host name from the address). It also selects "tls" for a
	// bare "host:port" address.
	TLS *tls.Config
	// AuthToken, when non-empty, is sent in the "auth" handshake right
	// after connecting. It must not contain CR or LF. Send it only over
	// TLS, QUIC or a Unix socket.
	AuthToken string
	// Name, when non-empty, names the connection (the dflockd name
	// extension): it is sent right after the auth handshake, and the
	// server shows it in stats, inspect and its logs, so an operator sees
	// "backup-job-7" rather than an ephemeral port. 1 to 64 bytes of
	// printable ASCII without leading or trailing space (else Dial fails
	// with ErrInvalid). A server that does not know the extension (1.x)
	// answers `error`, which Dial ignores: the connection is used unnamed.
	Name string
	// DialTimeout bounds connecting, including the TLS and auth
	// handshakes (0 = DefaultDialTimeout, 10s; negative = only the
	// context bounds it).
	DialTimeout time.Duration
	// Cluster, when set, lists the client addresses of the members of
	// one replicated dflockd cluster (addresses as for Dial; give them
	// all: the leader is found through whichever answers). Dial, and NewSignalConn,
	// then take an empty address, ask the members who leads and connect
	// to the leader; see "Clusters" in the package documentation. Every
	// member is reached with the same Transport, TLS and AuthToken.
	Cluster []string
	// QUIC, when set, makes Dial open the connection as a new stream of
	// this QUIC connection instead of dialling; the address and Transport
	// are then ignored. Closing the Conn closes only its stream; closing
	// the session ends every Conn on it.
	QUIC *transport.QUICSession
}

// dialTimeout returns the effective dial timeout; 0 means none.
func (o *Options) dialTimeout() time.Duration {
	switch {
	case o.DialTimeout == 0:
		return DefaultDialTimeout
	case o.DialTimeout < 0:
		return 0
	}
	return o.DialTimeout
}

// endpoint works out the endpoint to dial for addr: its scheme when it
// has one, else a Unix socket when it is a path, else Transport (or tls
// when TLS is set, or tcp) with the default port when it has none (see
// transport.ParseEndpoint).
func (o *Options) endpoint(addr string) (transport.Endpoint, error) {
	name := strings.ToLower(o.Transport)
	if scheme, _, ok := strings.Cut(addr, "://"); ok {
		if name != "" && !strings.EqualFold(scheme, name) {
			return transport.Endpoint{}, invalid("address %q does not match transport %q", addr, o.Transport)
		}
	} else if transport.LooksLikePath(addr) && name != "" && name != "unix" {
		return transport.Endpoint{}, invalid("address %q is a Unix socket path, but the transport is %q", addr, o.Transport)
	}
	bare := name
	if bare == "" {
		bare = "tcp"
		if o.TLS != nil {
			bare = "tls"
		}
	}
	e, err := transport.ParseAddr(addr, bare)
	if err != nil {
		return transport.Endpoint{}, invalid("address %q: %v", addr, err)
	}
	return e, nil
}

// A LeaseOption modifies one acquire, enqueue or renew request.
type LeaseOption func(*leaseOptions)

type leaseOptions struct {
	ttl int64 // seconds; 0 = server default
	err error
}

// WithLeaseTTL asks for a lease of the given number of seconds instead of
// the server's default. 0 means the default; a negative value or one above
// 9223372036 (the largest the server accepts) makes the call fail with
// ErrInvalid before anything is sent.
func WithLeaseTTL(seconds int) LeaseOption {
	return func(o *leaseOptions) {
		if err := checkLease(int64(seconds)); err != nil {
			o.err = err
			return
		}
		o.ttl = int64(seconds)
	}
}

// checkLease validates a lease in seconds; 0 is the server default.
func checkLease(s int64) error {
	if s < 0 || s > protocol.MaxSeconds {
		return invalid("lease %d s out of range [0, %d]", s, protocol.MaxSeconds)
	}
	return nil
}

// leaseArg applies opts and returns the lease field ("" for the default).
func leaseArg(opts []LeaseOption) (string, error) {
	var o leaseOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.err != nil {
		return "", o.err
	}
	if o.ttl == 0 {
		return "", nil
	}
	return strconv.FormatInt(o.ttl, 10), nil
}

// seconds converts a timeout to whole seconds for the wire, rounding any
// fraction up (1.2s → 2, 0 → 0). Negative durations are rejected, and so
// is a duration whose seconds exceed protocol.MaxSeconds.
func seconds(what string, d time.Duration) (string, error) {
	if d < 0 {
		return "", invalid("negative %s %v", what, d)
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	if s > protocol.MaxSeconds {
		return "", invalid("%s %v too large", what, d)
	}
	return strconv.FormatInt(s, 10), nil
}

// checkKey validates a lock or semaphore key, or a listen pattern.
func checkKey(what, key string) error {
	if !protocol.ValidKey(key) {
		return invalid("%s %q: want 1 to %d bytes without whitespace", what, key, protocol.MaxLine)
	}
	return nil
}

// checkToken validates a lease token. Tokens are opaque, but never empty,
// never longer than a line and never contain whitespace (§3), so a token
// that breaks these rules, CR and LF included, cannot be valid.
func checkToken(token string) error {
	switch {
	case strings.TrimSpace(token) == "":
		return invalid("empty token")
	case strings.ContainsAny(token, "\r\n"):
		return invalid("token contains CR or LF")
	case strings.IndexFunc(token, unicode.IsSpace) >= 0:
		return invalid("token contains whitespace")
	case len(token) > protocol.MaxLine:
		return invalid("token longer than %d bytes", protocol.MaxLine)
	}
	return nil
}

// checkLimit validates a semaphore limit.
func checkLimit(limit int) error {
	if limit < 1 {
		return invalid("semaphore limit %d: must be at least 1", limit)
	}
	return nil
}

// checkSignal validates a signal channel and payload: a literal channel
// (no wildcards), a payload that is neither blank nor multi-line and fits
// the server's frame size.
func checkSignal(channel, payload string) error {
	if !protocol.ValidChannel(channel) {
		return invalid("channel %q: want a key without '*' or '>'", channel)
	}
	switch {
	case strings.TrimSpace(payload) == "":
		return invalid("blank payload")
	case strings.ContainsAny(payload, "\r\n"):
		return invalid("payload contains CR or LF")
	case len(payload) > protocol.MaxPayload(len(channel)):
		return invalid("payload of %d bytes exceeds %d", len(payload), protocol.MaxPayload(len(channel)))
	}
	return nil
}
