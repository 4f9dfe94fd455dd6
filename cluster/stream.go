package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The raft links between nodes: a raft.StreamLayer over TCP, with mutual
// TLS when the cluster has a CA. Every connection, in both directions,
// must present a certificate signed by the cluster's CA: a process
// without one cannot even open a raft connection, let alone vote or
// append. Plain TCP is for loopback test clusters (the command line
// refuses it on other addresses unless told otherwise).

// handshakeTimeout bounds the TLS handshake of a raft connection, on
// either side. A peer that connects and sends nothing is dropped after it,
// without holding up other connections.
const handshakeTimeout = 10 * time.Second

// StreamConfig configures the raft stream layer.
type StreamConfig struct {
	// TLS, when set, is the node's mutual-TLS configuration (see
	// MutualTLS); nil means plain TCP.
	TLS *tls.Config
	// Advertise is the address other nodes dial to reach this one (nil
	// = the listener's address).
	Advertise net.Addr
	// Dial, when set, opens the TCP connection to another node in place
	// of a plain dial (the TLS handshake, if any, still runs over it).
	// Tests route raft links through fault-injecting proxies with it.
	Dial func(ctx context.Context, address string) (net.Conn, error)
}

// MutualTLS returns the TLS configuration of a cluster node: it presents
// cert to every peer and accepts only peers whose certificate chains to
// one of the CA certificates in ca (PEM), in both directions. Node
// addresses are not checked against the certificates' names (nodes are
// often addressed by IP): membership in the cluster is proven by the CA,
// which must be the cluster's own.
func MutualTLS(cert tls.Certificate, caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster: the raft CA file holds no PEM certificate")
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cluster: raft peer presented no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         pool,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("cluster: raft peer certificate: %w", err)
		}
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Both sides verify the chain themselves (VerifyConnection):
		// the client skips only the host name check, the server
		// requires a certificate.
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, //nolint:gosec // the chain is verified in VerifyConnection
		VerifyConnection:   verify,
	}, nil
}

// Stream is a raft.StreamLayer: it accepts raft connections on a TCP
// listener and dials other nodes.
type Stream struct {
	ln     net.Listener
	cfg    StreamConfig
	conns  chan net.Conn
	relays chan *RelayConn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// announce handles members' endpoint announcements (announce.go).
	announce atomic.Pointer[announceHandler]

	mu      sync.Mutex
	pending map[net.Conn]struct{} // handshakes in progress
	live    map[net.Conn]struct{} // accepted and not yet closed
	closed  bool
}

// acceptedConn is a connection returned by Accept; closing it forgets it.
type acceptedConn struct {
	net.Conn
	s    *Stream
	once sync.Once
}

func (c *acceptedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.live, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// NewStream serves the raft stream layer on ln, which it owns from now on.
func NewStream(ln net.Listener, cfg StreamConfig) *Stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{ln: ln, cfg: cfg, conns: make(chan net.Conn), relays: make(chan *RelayConn), ctx: ctx, cancel: cancel,
		pending: make(map[net.Conn]struct{}), live: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Listen binds addr and serves the raft stream layer on it.
func Listen(addr string, cfg StreamConfig) (*Stream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listener: %w", err)
	}
	return NewStream(ln, cfg), nil
}

// acceptLoop accepts TCP connections and completes each one's TLS
// handshake in a goroutine of its own, so that a silent peer holds up no
// one; Accept returns only connections whose handshake succeeded.
func (s *Stream) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// A listener that fails for another reason is done; Accept
			// reports it through the closed context.
			s.cancel()
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.open(c)
		}()
	}
}

// open completes an accepted connection: the TLS handshake, then the
// first byte, which says whether it carries raft RPCs (raft's own framing,
// handed to Accept), a relayed client connection (relayMagic, handed to
// AcceptRelay) or a member's endpoint announcement (announceMagic,
// answered here). All are bounded by handshakeTimeout.
func (s *Stream) open(c net.Conn) {
	defer s.untrack(c)
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn := c
	if s.cfg.TLS != nil {
		tc := tls.Server(c, s.cfg.TLS)
		ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return
		}
		conn = tc
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		conn.Close()
		return
	}
	if first[0] == announceMagic {
		s.serveAnnounce(conn) // within the deadline set above
		conn.Close()
		return
	}
	if first[0] == relayMagic {
		rc, err := readRelayHeader(conn)
		_ = c.SetDeadline(time.Time{})
		if err != nil {
			conn.Close()
			return
		}
		if s.cfg.TLS == nil {
			// Without mutual TLS anyone who reaches the port could
			// claim any identity: it is not taken from the header.
			rc.Info.Identity = ""
		}
		s.deliverRelay(rc)
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.deliver(&prefixConn{Conn: conn, first: first[0], has: true})
}

// prefixConn gives back the byte read to tell raft from relay
// connections before the rest of the stream.
type prefixConn struct {
	net.Conn
	first byte
	has   bool
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.has && len(p) > 0 {
		p[0] = c.first
		c.has = false
		return 1, nil
	}
	return c.Conn.Read(p)
}

func (s *Stream) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pending[c] = struct{}{}
	return true
}

func (s *Stream) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
}

// deliver hands c to Accept, or closes it when the stream is closed.
func (s *Stream) deliver(c net.Conn) {
	ac := &acceptedConn{Conn: c, s: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.live[ac] = struct{}{}
	s.mu.Unlock()
	select {
	case s.conns <- ac:
	case <-s.ctx.Done():
		ac.Close()
	}
}

// deliverRelay hands rc to AcceptRelay, or closes it when the stream is
// closed.
func (s *Stream) deliverRelay(rc *RelayConn) {
	ac := &acceptedConn{Conn: rc.Conn, s: s}
	rc.Conn = ac
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ac.Conn.Close()
		return
	}
	s.live[ac] = struct{}{}
	s.mu.Unlock()
	select {
	case s.relays <- rc:
	case <-s.ctx.Done():
		ac.Close()
	}
}

// AcceptRelay returns the next client connection another node relays to
// this one.
func (s *Stream) AcceptRelay() (*RelayConn, error) {
	select {
	case rc := <-s.relays:
		return rc, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Accept returns the next raft connection whose handshake succeeded.
func (s *Stream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, drops the handshakes in progress, closes the
// connections Accept returned (so that their readers end) and waits for
// the stream's goroutines. Connections returned by Dial are their users'
// to close.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.pending {
		c.Close()
	}
	live := make([]net.Conn, 0, len(s.live))
	for c := range s.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Addr returns the address other nodes dial: Advertise, or the
// listener's.
func (s *Stream) Addr() net.Addr {
	if s.cfg.Advertise != nil {
		return s.cfg.Advertise
	}
	return s.ln.Addr()
}

// Dial opens a raft connection to another node, its handshake complete,
// within timeout.
func (s *Stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	dial := s.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, address string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", address)
		}
	}
	c, err := dial(ctx, string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, err)
	}
	if s.cfg.TLS == nil {
		return c, nil
	}
	tc := tls.Client(c, s.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, err)
	}
	return tc, nil
}

// IsLoopback reports whether addr ("host:port") names a loopback address
// (127.0.0.0/8, ::1 or localhost): the only place plain-TCP raft links are
// allowed without an explicit opt-in.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
