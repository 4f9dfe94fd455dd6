package server

import (
	"fmt"
	"net"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/transport"
)

// peerInfo is what the accept path learns about a connection before its
// session starts. It reads nothing from the connection.
type peerInfo struct {
	// cred holds a Unix socket peer's credentials (nil when the
	// transport has none, or credErr says why they are missing).
	cred    *auth.UnixCred
	credErr error
	// limited: the connection can fail authentication, and its failures
	// count against src in the failure limiter.
	limited bool
	src     string
}

// inspect gathers the peerInfo of a connection accepted on a listener
// served as lo.
func (s *Server) inspect(c net.Conn, lo Listener) peerInfo {
	var pi peerInfo
	if pc, ok := c.(transport.PeerCreder); ok {
		if cred, err := pc.PeerCred(); err == nil {
			pi.cred = &auth.UnixCred{PID: cred.PID, UID: cred.UID, GID: cred.GID}
		} else {
			pi.credErr = err
		}
	}
	if s.authLim != nil && (s.opts.Auth != nil || lo.Peer != nil) {
		pi.limited = true
		pi.src = sourceKey(c.RemoteAddr(), pi.cred)
	}
	return pi
}

// remoteName is how stats and logs name the remote end of c: the peer's
// user and process ids on a Unix socket with credentials ("uid=1000
// pid=4242"), else its network address.
func remoteName(c net.Conn, cred *auth.UnixCred) string {
	if cred != nil {
		return fmt.Sprintf("uid=%d pid=%d", cred.UID, cred.PID)
	}
	if ra := c.RemoteAddr(); ra != nil {
		return ra.String()
	}
	return ""
}
