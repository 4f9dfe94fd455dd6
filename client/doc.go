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
//     delivers them on a channel, while still answering commands.
//
// Below them, Conn is one server connection with one method per protocol
// command (Acquire, Release, Renew, Enqueue, Wait, their Sem* twins,
// Ping, Stats, Emit). It is what Lock, Semaphore and SignalConn use.
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
// # Contexts
//
// Every call that talks to the server takes a context. When the context
// ends while a request is in flight, the connection is closed at once —
// that is the only way to tell the server to stop waiting on our behalf,
// and it makes the server release whatever the connection held — and the
// call returns an error wrapping the context's error. The Conn is unusable
// afterwards.
//
// # Errors
//
// Every status word of the protocol has a sentinel error (ErrTimeout,
// ErrMaxLocks, ...); compare with errors.Is. ErrInvalid reports arguments
// rejected before anything was sent, ErrClosed a connection that can no
// longer be used, and ErrServer a plain "error" answer or a reply the
// client did not expect.
package client
