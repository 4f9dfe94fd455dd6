package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
)

// clientCert accepts peers that presented a verified client certificate.
type clientCert struct{}

// ClientCert returns a PeerAuthenticator that accepts a connection only when
// its TLS handshake verified a client certificate chain
// (p.TLS.VerifiedChains is non-empty). The server's TLS configuration does
// the verifying (tls.RequireAndVerifyClientCert with the trusted CA pool);
// ClientCert only refuses connections where that did not happen, and names
// the peer.
//
// The identity is "cert:" followed by the leaf certificate's subject common
// name or, when that is empty, its first DNS name or else its first e-mail
// address. A certificate naming none of these is refused.
func ClientCert() PeerAuthenticator { return clientCert{} }

// AuthenticatePeer implements PeerAuthenticator.
func (clientCert) AuthenticatePeer(_ context.Context, p Peer) (Identity, error) {
	if p.TLS == nil {
		return Identity{}, fmt.Errorf("%w: not a TLS connection", ErrDenied)
	}
	if len(p.TLS.VerifiedChains) == 0 || len(p.TLS.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: no verified client certificate", ErrDenied)
	}
	name := certName(p.TLS.VerifiedChains[0][0])
	if name == "" {
		return Identity{}, fmt.Errorf("%w: client certificate names no subject, DNS name or e-mail address", ErrDenied)
	}
	return Identity{Name: "cert:" + name}, nil
}

// certName is the name a client certificate identifies its holder by.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		return c.EmailAddresses[0]
	}
	return ""
}

// unixCreds accepts Unix socket peers by user or group id.
type unixCreds struct {
	uids, gids []uint32
}

// UnixCreds returns a PeerAuthenticator that accepts a connection whose peer
// process credentials (p.Cred) have a user id in uids or a group id in gids.
// An empty list admits nobody on its own dimension, so UnixCreds(nil, gids)
// admits by group only. With both lists empty it refuses everybody: build it
// only when at least one id is given. A peer without credentials (p.Cred is
// nil, as on any transport other than a Unix socket) is refused.
//
// The identity is "uid:" followed by the peer's user id. The lists are
// copied.
func UnixCreds(uids, gids []uint32) PeerAuthenticator {
	return &unixCreds{uids: slices.Clone(uids), gids: slices.Clone(gids)}
}

// AuthenticatePeer implements PeerAuthenticator.
func (u *unixCreds) AuthenticatePeer(_ context.Context, p Peer) (Identity, error) {
	if p.Cred == nil {
		return Identity{}, fmt.Errorf("%w: no peer credentials", ErrDenied)
	}
	if !slices.Contains(u.uids, p.Cred.UID) && !slices.Contains(u.gids, p.Cred.GID) {
		return Identity{}, fmt.Errorf("%w: uid %d gid %d not allowed", ErrDenied, p.Cred.UID, p.Cred.GID)
	}
	return Identity{Name: "uid:" + strconv.FormatUint(uint64(p.Cred.UID), 10)}, nil
}
