// Package auth decides whether a connection may use the server.
//
// An Authenticator is consulted once per connection. The shared-token
// authenticator implements the 1.x "auth" handshake: the connection's first
// request must be `auth` carrying the configured token, compared in constant
// time. A nil Authenticator means authentication is off.
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
	// TLS is the handshake state for TLS-based transports, nil otherwise.
	TLS *tls.ConnectionState
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
