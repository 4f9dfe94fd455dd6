// Package client is the Go client of dflockd, a distributed lock server.
//
// It has two layers. The high-level types hold one resource each and do
// the bookkeeping for you:
//
//   - Lock and Semaphore acquire a lock or a semaphore slot on the server
//     that owns their key (see ShardFunc), keep the lease alive in the
//     background until Release or Close, and report a lost lease through
//     Lost and OnRenewError.
//   - SignalConn listens for pub/sub signals on a dedicated connection and
//     delivers them on a channel, while still answering commands; with
//     WithReconnect it survives a dropped connection.
//
// Below them, Conn is one server connection with one method per protocol
// command (Acquire, Release, Renew, Enqueue, Wait, their Sem* twins,
// Ping, Stats, Emit, Session, Resume, Bye). It is what Lock, Semaphore
// and SignalConn use.
//
// # Addresses and transports
//
// A server address is either a bare "host[:port]", which means TCP (or TLS
// when Options.TLS is set) on port 6388 unless given, a bare path
// ("/run/dflockd.sock", "./d.sock"), which means the Unix socket, or an
// endpoint URL whose scheme names a registered transport:
// "tcp://host:port", "tls://host:port", "unix:///abs/path.sock",
// "quic://host:port". Options.Transport names the transport of bare host
// addresses explicitly instead. Options.QUIC opens the connection as one
// more stream on an existing QUIC connection (transport.DialQUIC), so many
// sessions can share one QUIC handshake and UDP socket.
//
// # Clusters
//
// A replicated dflockd cluster (dflockd --data-dir --peers) is one lock
// service spread over three or five nodes, of which one, the leader,
// serves. Name its members rather than one server: Lock.Cluster and
// Semaphore.Cluster, Options.Cluster for Dial and NewSignalConn, or, in
// any address argument and in each Servers entry, the member addresses
// separated by commas ("10.0.0.1:6388,10.0.0.2:6388,10.0.0.3:6388"; one
// member alone ends with a comma: "10.0.0.1:6388,"). Give them all: the
// client reaches the cluster only through the addresses given (and the
// leader's endpoints they name), so a member given alone that dies takes
// the cluster out of reach.
//
// To connect, the client asks every member at once for its view of the
// cluster (the `cluster` request, Conn.ClusterStatus), and dials the
// leader's client endpoint: one of the transport the members are given
// with (the address's scheme, Options.Transport, or tls with Options.TLS),
// else the first one this client can dial; if that fails, the member
// that named the leader, which relays the connection to it. While members
// answer but know no leader (an election), it tries again with back-off
// within the dial timeout.
//
// When the leader dies or hands leadership over, its connections (and
// relays through it) close, and a node that stops leading answers
// `error` and closes: the client takes either as a dropped connection,
// finds the new leader the same way (back-off 50ms doubling to 1s) and
// resumes its session there, as it does after any drop (see Sessions):
// held locks stay held with the same token and fence and are renewed on
// the new leader, blocked Acquires keep their places in the queue, in
// order, and Lost fires only when the lease or the session is really
// gone. A SignalConn with WithReconnect listens again on the new leader
// (signals are best effort across a failover).
//
// Servers shards keys over independent servers or clusters: with
// Servers: []string{"a1,a2,a3", "b1,b2,b3"}, each key lives on one of two
// clusters, chosen by ShardFunc.
//
// Errors: when no leader can be reached — every member unreachable,
// those that answer knowing no leader within the dial timeout (a lost
// majority), or the leader they name unreachable — Dial, Acquire and the
// other calls that connect return a *NoLeaderError, which matches
// ErrNoLeader and lists each address tried with what it said. That is
// distinct from not acquiring the lock in time (Acquire reports false),
// and from a refused auth token (ErrAuth) or a TLS certificate that does
// not verify, which are returned at once rather than retried.
//
// # Contexts
//
// Every call that talks to the server takes a context. When the context
// ends while a request is in flight, the connection is closed at once —
// that is the only way to tell the server to stop waiting on our behalf,
// and it makes the server release whatever the connection held (or, for
// a named session, keep it for the session TTL: Lock and Semaphore then
// end the session over a new connection) — and the call returns an error
// wrapping the context's error. The Conn is unusable afterwards.
//
// # Sessions
//
// A connection holds what it acquires; when it drops, a server releases
// all of it at once, unless the connection named a session (the dflockd
// sessions extension, Conn.Session): the server then keeps the session's
// locks, semaphore slots and queue places for the session TTL (15s
// unless asked or configured otherwise), and a new connection takes them
// back with Conn.Resume. Conn.Bye ends a session at once.
//
// Lock and Semaphore name a session by default (see NoSession and
// SessionTTL) and ride through a dropped connection by themselves: they
// reconnect to the same server with back-off (50ms doubling to 1s),
// resume, and carry on —
//
//   - a held lease keeps being renewed, on the new connection (at least
//     every third of the session TTL, so that a drop is noticed while
//     the session lasts), with the same token;
//   - a blocked Acquire or Wait keeps its place in the queue and returns
//     when it is granted, also when the grant happened while it was away;
//   - Release after a reconnection works, and ends the session with bye;
//   - Lost fires, and OnRenewError is called, only when the lock is really
//     gone, or may be: the server refused the renewal or the resume, or
//     the client could not reconnect before the session or the lease
//     could have expired on the server.
//
// Leases do not stop while the connection is away: a lease shorter than
// the outage ends as usual, and the next renewal reports it lost. A
// session is tied to the server that named it: a restarted in-memory
// server does not know it (the resume is refused and Lost fires), while a
// replicated one (--data-dir) or a cluster keeps it. A server without
// the extension (dflockd 1.x) answers `error` to session; Lock and
// Semaphore then work as they did there, where a dropped connection loses
// the lock.
//
// SignalConn keeps no state on the server worth resuming: with
// WithReconnect it dials again after a drop and re-issues its listens,
// and signals emitted meanwhile are lost.
//
// Sessions do not make fencing unnecessary: a client that stalls or is cut
// off for long loses its lease like any other, so guard the resource with
// the lease's fencing number (FenceFromToken).
//
// # Errors
//
// Every status word of the protocol has a sentinel error (ErrTimeout,
// ErrMaxLocks, ...); compare with errors.Is. ErrInvalid reports arguments
// rejected before anything was sent, ErrClosed a connection that can no
// longer be used, and ErrServer a plain "error" answer or a reply the
// client did not expect.
package client
