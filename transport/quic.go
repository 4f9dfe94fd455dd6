//go:build !noquic

package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/quic-go/quic-go"
)

// quicMaxStreams is how many dflockd sessions (bidirectional streams) one
// client connection may have open at once.
const quicMaxStreams = 1000

// quicNoError is the application error code sent when a connection is
// closed on purpose.
const quicNoError quic.ApplicationErrorCode = 0

func init() { Register("quic", quicTransport{}) }

// quicTransport is dflockd over QUIC (RFC 9000) with TLS 1.3 and the ALPN
// protocol ALPN. Addresses are UDP "host:port".
//
// Each QUIC stream is one dflockd session: the listener's Accept returns
// streams, from any connection, as net.Conns; Dial opens a connection with
// a single stream, and DialQUIC opens a connection that can carry many.
// The client must write first on every stream: the server learns of a
// stream only when its first byte (or its end) arrives, so a client that
// waits for the server to speak on a fresh stream waits forever.
//
// Conns implement TLSConner. 0-RTT is never used.
type quicTransport struct{}

var (
	_ Transport     = quicTransport{}
	_ AddrValidator = quicTransport{}
)

// ValidateAddr implements AddrValidator.
func (quicTransport) ValidateAddr(addr string) error { return validateHostPort(addr) }

// Listen implements Transport. opts.TLS must be set and hold a certificate.
// The listener owns one UDP socket; closing it closes every QUIC
// connection it accepted (they share that socket), which ends their
// sessions.
func (quicTransport) Listen(ctx context.Context, addr string, opts Options) (net.Listener, error) {
	l, err := listenQUIC(ctx, addr, opts)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return l, nil
}

// Dial implements Transport. It opens a new QUIC connection with one
// stream; closing the returned conn closes the connection.
func (quicTransport) Dial(ctx context.Context, addr string, opts Options) (net.Conn, error) {
	s, err := DialQUIC(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	c, err := s.OpenConn(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	// Hand the session's reference to the stream: the connection now
	// lives exactly as long as c.
	s.qc.release()
	return c, nil
}

// quicConfig returns the QUIC settings for one side.
func quicConfig(opts Options, server bool) *quic.Config {
	cfg := &quic.Config{
		MaxIdleTimeout:        opts.quicIdleTimeout(),
		KeepAlivePeriod:       opts.quicKeepAlive(),
		MaxIncomingStreams:    -1, // the server never opens streams
		MaxIncomingUniStreams: -1, // unidirectional streams are not used
	}
	if server {
		cfg.MaxIncomingStreams = quicMaxStreams
	}
	return cfg
}

// quicServerTLSConfig is serverTLSConfig plus TLS 1.3 and ALPN, also for
// configs returned by GetConfigForClient.
func quicServerTLSConfig(cfg *tls.Config) (*tls.Config, error) {
	c, err := serverTLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	setQUICTLS(c)
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if cc == nil || err != nil {
				return cc, err
			}
			cc = cc.Clone()
			setQUICTLS(cc)
			return cc, nil
		}
	}
	return c, nil
}

// quicClientTLSConfig is clientTLSConfig plus TLS 1.3 and ALPN. An empty
// ServerName is taken from host, as crypto/tls's dialer does.
func quicClientTLSConfig(cfg *tls.Config, host string) *tls.Config {
	c := clientTLSConfig(cfg)
	setQUICTLS(c)
	if c.ServerName == "" {
		c.ServerName = host
	}
	return c
}

// setQUICTLS forces TLS 1.3 and the dflockd ALPN protocol on c.
func setQUICTLS(c *tls.Config) {
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	c.NextProtos = []string{ALPN}
}

// QUICSession is one dialed QUIC connection that can carry many dflockd
// sessions, one per stream. It is safe for concurrent use.
//
// The session and every conn from OpenConn each hold the connection open;
// Close ends it at once for all of them.
type QUICSession struct {
	qc *quicConn
}

// DialQUIC dials addr (UDP "host:port") and completes the QUIC and TLS 1.3
// handshake within ctx. opts.TLS as for Dial: nil means the system roots,
// and an empty ServerName is taken from addr. A host name that resolves to
// several addresses is tried one address at a time, in the resolver's
// order. The session owns its own UDP socket.
func DialQUIC(ctx context.Context, addr string, opts Options) (*QUICSession, error) {
	host, raddrs, err := resolveUDP(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial quic %s: %w", addr, err)
	}
	tlsConf := quicClientTLSConfig(opts.TLS, host)
	cfg := quicConfig(opts, false)
	var firstErr error
	for _, raddr := range raddrs {
		qc, err := dialQUICAddr(ctx, raddr, tlsConf, cfg)
		if err == nil {
			qc.refs = 1 // the session's own reference
			return &QUICSession{qc: qc}, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dial quic %s: %w", addr, firstErr)
}

// dialQUICAddr dials one address from a fresh UDP socket of its family.
func dialQUICAddr(ctx context.Context, raddr *net.UDPAddr, tlsConf *tls.Config, cfg *quic.Config) (*quicConn, error) {
	network := "udp4"
	if raddr.IP.To4() == nil {
		network = "udp6"
	}
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	closeTransport := func() error { return errors.Join(tr.Close(), udp.Close()) }
	conn, err := tr.Dial(ctx, raddr, tlsConf, cfg)
	if err != nil {
		_ = closeTransport()
		return nil, err
	}
	return newQUICConn(conn, true, closeTransport), nil
}

// OpenConn opens a new stream, i.e. a new dflockd session, on the
// connection. ctx bounds the wait for the server's stream limit. The conn
// must be written to first (see the quic transport); closing it leaves
// the connection open.
func (s *QUICSession) OpenConn(ctx context.Context) (net.Conn, error) {
	if err := s.qc.acquire(); err != nil {
		return nil, err
	}
	str, err := s.qc.conn.OpenStreamSync(ctx)
	if err != nil {
		s.qc.release()
		return nil, fmt.Errorf("quic: open stream: %w", err)
	}
	return newStreamConn(str, s.qc), nil
}

// Close closes the connection and with it every stream still open on it;
// their Reads and Writes fail, on both sides. Conns already closed get up
// to quicCloseLinger to see the server end their streams first, so that
// what was written to them before their Close is delivered. A second Close
// returns an error matching net.ErrClosed.
func (s *QUICSession) Close() error { return s.qc.shutdown() }

// resolveUDP resolves "host:port" within ctx. It returns the host (for TLS
// verification) and its addresses. An empty host means the IPv4 loopback
// address.
func resolveUDP(ctx context.Context, addr string) (string, []*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return "", nil, err
	}
	var ips []netip.Addr
	if host == "" {
		ips = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	} else if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			return "", nil, err
		}
		if len(ips) == 0 {
			return "", nil, fmt.Errorf("no addresses for %q", host)
		}
	}
	addrs := make([]*net.UDPAddr, len(ips))
	for i, ip := range ips {
		addrs[i] = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	return host, addrs, nil
}

// quicListener turns the streams of all accepted QUIC connections into one
// stream of net.Conns.
type quicListener struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	// ctx is canceled by Close; it stops the accept goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept goroutines

	streams chan *streamConn // accepted streams, handed to Accept

	stopOnce sync.Once
	stopped  chan struct{} // closed with stopErr set: Accept fails
	stopErr  error

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	conns  map[*quic.Conn]struct{} // live accepted connections
	closed bool
}

// listenQUIC binds a UDP socket and starts accepting QUIC connections.
func listenQUIC(ctx context.Context, addr string, opts Options) (*quicListener, error) {
	tlsConf, err := quicServerTLSConfig(opts.TLS)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	udp := pc.(*net.UDPConn)
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsConf, quicConfig(opts, true))
	if err != nil {
		err = errors.Join(err, tr.Close(), udp.Close())
		return nil, fmt.Errorf("listen quic %s: %w", addr, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &quicListener{
		udp:     udp,
		tr:      tr,
		ln:      ln,
		ctx:     lctx,
		cancel:  cancel,
		streams: make(chan *streamConn),
		stopped: make(chan struct{}),
		conns:   make(map[*quic.Conn]struct{}),
	}
	l.wg.Go(l.acceptConns)
	return l, nil
}

// Accept implements net.Listener: it returns the next stream opened by any
// client. After Close the error matches net.ErrClosed.
func (l *quicListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.streams:
		return c, nil
	case <-l.stopped:
		return nil, l.stopErr
	}
}

// Addr implements net.Listener: the UDP address.
func (l *quicListener) Addr() net.Addr { return l.ln.Addr() }

// Close implements net.Listener. It unblocks Accept, closes every accepted
// connection (the peers see an application close with code 0), releases
// the UDP socket and waits for the listener's goroutines to end.
func (l *quicListener) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		l.closeErr = l.close()
	})
	if !first {
		return l.opError("close", net.ErrClosed)
	}
	return l.closeErr
}

func (l *quicListener) close() error {
	l.stop(l.opError("accept", net.ErrClosed))
	// Take the connections before canceling ctx: a stream acceptor that
	// sees ctx end forgets its connection, which must still be closed.
	l.mu.Lock()
	l.closed = true
	conns := make([]*quic.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	l.cancel()

	err := l.ln.Close()
	// Connections that finished their handshake but were never accepted
	// stay queued in the quic listener; take them out to close them too.
	for {
		c, aerr := l.ln.Accept(context.Background())
		if aerr != nil {
			break
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { _ = c.CloseWithError(quicNoError, "listener closed") })
	}
	wg.Wait()
	err = errors.Join(err, l.tr.Close(), l.udp.Close())
	l.wg.Wait()
	return err
}

// stop makes Accept fail with err from now on.
func (l *quicListener) stop(err error) {
	l.stopOnce.Do(func() {
		l.stopErr = err
		close(l.stopped)
	})
}

func (l *quicListener) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "quic", Addr: l.Addr(), Err: err}
}

// acceptConns accepts QUIC connections until the listener closes and
// starts a stream acceptor for each.
func (l *quicListener) acceptConns() {
	for {
		conn, err := l.ln.Accept(l.ctx)
		if err != nil {
			if l.ctx.Err() == nil {
				// Not our Close: report it instead of hanging Accept.
				l.stop(l.opError("accept", err))
			}
			return
		}
		if !l.track(conn) {
			_ = conn.CloseWithError(quicNoError, "listener closed")
			return
		}
		l.wg.Go(func() { l.acceptStreams(conn) })
	}
}

// track records conn so that Close can close it. It reports false if the
// listener is already closed.
func (l *quicListener) track(conn *quic.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[conn] = struct{}{}
	return true
}

// acceptStreams hands conn's streams to Accept until conn dies or the
// listener closes.
func (l *quicListener) acceptStreams(conn *quic.Conn) {
	defer func() {
		l.mu.Lock()
		delete(l.conns, conn)
		l.mu.Unlock()
	}()
	qc := newQUICConn(conn, false, nil)
	for {
		str, err := conn.AcceptStream(l.ctx)
		if err != nil {
			return // connection gone, or listener closed
		}
		sc := newStreamConn(str, qc)
		select {
		case l.streams <- sc:
		case <-l.ctx.Done():
			str.CancelRead(quicStreamNoError)
			str.CancelWrite(quicStreamNoError)
			return
		}
	}
}
