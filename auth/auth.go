// Package auth decides whether a connection may use the server.
//
// There are two contracts, and a server may apply both to one connection:
//
//   - A PeerAuthenticator judges a connection from what its transport knows
//     (a verified TLS client certificate, the process credentials of a Unix
//     socket peer) as soon as it is accepted, before any request is read.
//     ClientCert and UnixCreds implement it.
//   - An Authenticator implements a handshake carried by the connection's
//     first request. Token implements the 1.x "auth" handshake: the first
//     request must be `auth` carrying the configured token, compared in
//     constant time.
//
// A nil Authenticator or PeerAuthenticator means that check is off.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"net"
)

// ErrDenied is returned by an Authenticator that refuses a connection.
var ErrDenied = errors.New("auth: denied")

// Peer describes the remote end of a connection being authenticated.
type Peer struct {
	// Transport is the registered name of the transport ("tcp", ...).
	Transport string
	// RemoteAddr is the peer's network address.
	RemoteAddr net.Addr
	// TLS is the handshake state for TLS-based transports (after the
	// handshake), nil otherwise.
	TLS *tls.ConnectionState
	// Cred holds the peer process's credentials when the transport reports
	// them (Unix sockets), nil otherwise.
	Cred *UnixCred
}

// UnixCred are the credentials of the process at the other end of a Unix
// socket, as the kernel reported them when it connected.
type UnixCred struct {
	PID      int32
	UID, GID uint32
}

// Identity names an authenticated peer. It is shown in logs and stats.
type Identity struct {
	Name string
}

// An Authenticator decides whether a session may proceed. It is called once
// per connection with the credential carried by the session's first request
// (the trimmed argument of `auth`, or "" when the first request was not
// `auth`). It returns ErrDenied (possibly wrapped) to refuse.
type Authenticator interface {
	Authenticate(ctx context.Context, p Peer, credential string) (Identity, error)
}

// A PeerAuthenticator decides whether a connection may proceed from what its
// transport knows about the peer. It is called once per connection, when it
// is accepted and before any request is read. It returns ErrDenied
// (wrapped, with a reason) to refuse.
type PeerAuthenticator interface {
	AuthenticatePeer(ctx context.Context, p Peer) (Identity, error)
}

// tokenAuth compares credentials against a shared secret.
type tokenAuth struct {
	sum [sha256.Size]byte
}

// Token returns an Authenticator that accepts exactly the given secret.
// The comparison runs in constant time with respect to the secret's content
// and length: both sides are hashed first, and the hashes are compared with
// subtle.ConstantTimeCompare.
func Token(secret string) Authenticator {
	return &tokenAuth{sum: sha256.Sum256([]byte(secret))}
}

// Authenticate implements Authenticator.
func (t *tokenAuth) Authenticate(_ context.Context, _ Peer, credential string) (Identity, error) {
	got := sha256.Sum256([]byte(credential))
	if subtle.ConstantTimeCompare(got[:], t.sum[:]) != 1 {
		return Identity{}, ErrDenied
	}
	return Identity{Name: "token"}, nil
}
