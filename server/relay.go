package server

import (
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/protocol"
)

// Relays (replicated mode). A node that is not the leader serves a client
// connection itself until its first request that needs the leader (any
// request but ping and a cluster status); from then on it relays the
// connection, whole, to the leader's raft port: that request, the bytes
// already received after it, and everything after. The leader serves it as
// if the client had dialled it: the header says who the client is (its
// remote, transport, transport-level identity) and the token it
// authenticated with, which the leader checks itself. When leadership
// moves the relay breaks and the client reconnects.

// relayDialTimeout bounds opening a relay to the leader.
const relayDialTimeout = 5 * time.Second

// leaderWait bounds how long a request that needs the leader waits for
// one to be known (an election in progress) before it is refused.
const leaderWait = 5 * time.Second

// awaitLeader returns the leader's raft address once one is known, or ""
// after leaderWait, when the server stops, or when this node leads (it
// then serves the request itself).
func (sess *session) awaitLeader(rep *cluster.Replica) raft.ServerAddress {
	deadline := time.Now().Add(leaderWait)
	for {
		if addr, _ := rep.Node().Raft().LeaderWithID(); addr != "" || rep.Leading() {
			return addr
		}
		if time.Now().After(deadline) || sess.srv.base.Err() != nil {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ServeRelays serves the client connections other nodes relay to this
// one, until the stream is closed. It returns nil then.
func (s *Server) ServeRelays(stream *cluster.Stream) error {
	for {
		rc, err := stream.AcceptRelay()
		if err != nil {
			return nil
		}
		sess, ok := s.admit(rc, rc.Info.Transport, nil, peerInfo{})
		if !ok {
			rc.Close()
			continue
		}
		sess.relayedIn = true
		sess.remote = rc.Info.Remote
		sess.tag.remote.Store(&rc.Info.Remote)
		if host, _, err := net.SplitHostPort(rc.Info.Remote); err == nil {
			sess.ip = host // per-IP limits count the client, not the relaying node
		}
		if rc.Info.Identity != "" {
			sess.setIdentity(rc.Info.Identity)
		}
		if !sess.authed && !sess.authRelayed(rc.Info.Credential) {
			rc.Close()
			s.forget(sess, false)
			continue
		}
		go sess.serve()
	}
}

// authRelayed checks the token a relayed client authenticated with on the
// relaying node.
func (sess *session) authRelayed(cred string) bool {
	s := sess.srv
	id, err := s.opts.Auth.Authenticate(s.base, sess.peer, cred)
	if err != nil {
		s.log.Warn("relayed connection refused: its credential does not authenticate here", "remote", sess.remote, "err", err)
		return false
	}
	sess.authed = true
	if sess.identity() == "" {
		sess.setIdentity(id.Name)
	}
	return true
}

// needsLeader reports whether req must be served by the leader (a node
// that is not relays the connection from it on).
func needsLeader(req *protocol.Request) bool {
	switch req.Cmd {
	case protocol.CmdPing, protocol.CmdAuth:
		return false
	case protocol.CmdCluster:
		return len(req.Op) > 0 && string(req.Op) != "status"
	}
	return true
}

// relayFrom relays the connection to the leader, starting with req, and
// returns once either side closes; false when there is no leader to relay
// to (the request is then served here, and refused if it needs the
// leader).
func (sess *session) relayFrom(rep *cluster.Replica, req *protocol.Request) bool {
	addr := sess.awaitLeader(rep)
	if addr == "" || rep.Leading() {
		return false
	}
	info := cluster.RelayInfo{Remote: sess.remote, Transport: sess.transport, Identity: sess.identity(),
		Node: rep.Node().ID(), Credential: sess.cred}
	up, err := rep.Node().Stream().DialRelay(addr, info, relayDialTimeout)
	if err != nil {
		sess.srv.log.Debug("relay to the leader failed", "conn", sess.id, "leader", string(addr), "err", err)
		return false
	}
	sess.srv.log.Debug("connection relayed to the leader", "conn", sess.id, "leader", string(addr))
	// Answers already owed go first; then the leader's.
	if !sess.flush() {
		up.Close()
		return true
	}
	head := protocol.AppendRequestOf(nil, req)
	head = append(head, sess.dec.TakeBuffered()...)
	head = append(head, sess.rd.pending[sess.rd.off:]...)
	sess.rd.pending, sess.rd.off = sess.rd.pending[:0], 0
	_ = sess.conn.SetReadDeadline(time.Time{}) // the leader times idle clients out
	done := make(chan struct{}, 2)
	go func() {
		if _, err := up.Write(head); err == nil {
			_, _ = io.Copy(up, sess.conn)
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(sess.conn, up)
		done <- struct{}{}
	}()
	<-done
	sess.conn.Close()
	up.Close()
	<-done
	return true
}
