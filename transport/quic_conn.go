//go:build !noquic

package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// quicCloseLinger bounds how long a client stream's Close waits for the
// server to end its side of the stream before the connection under it may
// be closed. See streamConn.Close.
const quicCloseLinger = 2 * time.Second

// quicStreamNoError is the stream error code of STOP_SENDING and
// RESET_STREAM frames sent by Close.
const quicStreamNoError quic.StreamErrorCode = 0

// quicConn is one QUIC connection shared by the streamConns on it.
//
// On the client side (dialed by us) it is reference counted: the
// QUICSession handle and each open stream hold a reference, and the
// connection is closed when the last one is released, or at once by
// shutdown (QUICSession.Close). On the server side the client decides
// when the connection ends (or the idle timeout, or the listener's Close);
// references are not counted.
type quicConn struct {
	conn    *quic.Conn
	client  bool
	onClose func() error // client: releases the transport and UDP socket

	mu        sync.Mutex
	refs      int
	closing   bool           // no new references or lingering closes
	lingering sync.WaitGroup // client streams waiting for the server's end

	closeOnce sync.Once
	closeErr  error
}

func newQUICConn(conn *quic.Conn, client bool, onClose func() error) *quicConn {
	return &quicConn{conn: conn, client: client, onClose: onClose}
}

// acquire takes a reference for a new stream.
func (c *quicConn) acquire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return &net.OpError{Op: "open", Net: "quic", Addr: c.conn.RemoteAddr(), Err: net.ErrClosed}
	}
	c.refs++
	return nil
}

// release drops a reference; the last one closes a client connection.
func (c *quicConn) release() {
	if !c.client {
		return
	}
	c.mu.Lock()
	c.refs--
	last := c.refs == 0 && !c.closing
	if last {
		c.closing = true
	}
	c.mu.Unlock()
	if last {
		// Every lingering close releases its reference after it is done,
		// so none is left to wait for.
		_ = c.closeConn()
	}
}

// lastRef reports whether one reference is left, the caller's.
func (c *quicConn) lastRef() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refs == 1
}

// startLinger registers a lingering stream close. It reports false if the
// connection is already being shut down, in which case there is nothing to
// linger for.
func (c *quicConn) startLinger() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.lingering.Add(1)
	return true
}

// shutdown closes the connection after the lingering stream closes are
// done, whatever the reference count.
func (c *quicConn) shutdown() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return &net.OpError{Op: "close", Net: "quic", Addr: c.conn.RemoteAddr(), Err: net.ErrClosed}
	}
	c.closing = true // from here on no lingering.Add
	c.mu.Unlock()
	c.lingering.Wait()
	return c.closeConn()
}

// closeConn closes the QUIC connection with "no error" and, on the client,
// the transport and socket under it.
func (c *quicConn) closeConn() error {
	c.closeOnce.Do(func() {
		err := c.conn.CloseWithError(quicNoError, "")
		if c.onClose != nil {
			err = errors.Join(err, c.onClose())
		}
		c.closeErr = err
	})
	return c.closeErr
}

// streamConn is one QUIC stream as a net.Conn: one dflockd session.
// Addresses and the TLS state come from the connection; deadlines and data
// from the stream.
type streamConn struct {
	str *quic.Stream
	qc  *quicConn

	writeMu sync.Mutex  // quic-go forbids Close concurrent with Write
	wrote   atomic.Bool // some byte was accepted by Write
	closed  atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

var (
	_ net.Conn  = (*streamConn)(nil)
	_ TLSConner = (*streamConn)(nil)
)

func newStreamConn(str *quic.Stream, qc *quicConn) *streamConn {
	return &streamConn{str: str, qc: qc}
}

// Read implements net.Conn. Past a deadline the error is a net.Error with
// Timeout() true that matches os.ErrDeadlineExceeded. When the connection
// dies (peer closed it, idle timeout, listener closed) Read fails with
// quic-go's error for that.
func (c *streamConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("read", net.ErrClosed)
	}
	n, err := c.str.Read(p)
	if err != nil && c.closed.Load() {
		err = c.opError("read", net.ErrClosed)
	}
	return n, err
}

// Write implements net.Conn. Deadlines behave as for Read.
func (c *streamConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	n, err := c.str.Write(p)
	if n > 0 {
		c.wrote.Store(true)
	}
	if err != nil && c.closed.Load() {
		err = c.opError("write", net.ErrClosed)
	}
	return n, err
}

// Close implements net.Conn. It unblocks Read and Write, ends the sending
// side after the bytes already written (the peer reads them, then EOF) and
// stops the receiving side.
//
// On a dialed stream that wrote something, the receiving side is kept
// until the server ends its side too, up to quicCloseLinger: only then is
// it known that the server has read everything, so only then may the
// connection go (QUIC drops undelivered stream data when a connection
// closes). If this is the connection's last reference Close waits for
// that, then closes the connection; otherwise the wait runs in the
// background and QUICSession.Close waits for it.
//
// A second Close returns an error matching net.ErrClosed.
func (c *streamConn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeErr = c.close()
	})
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	return c.closeErr
}

func (c *streamConn) close() error {
	c.closed.Store(true)
	// Wake a blocked Read, and a Write blocked on flow control (what it
	// already queued is still sent). Deadlines only affect Read and Write
	// calls: the stream keeps receiving, which the linger below relies on.
	now := time.Now()
	_ = c.str.SetReadDeadline(now)
	_ = c.str.SetWriteDeadline(now)
	c.writeMu.Lock()
	err := c.str.Close()
	c.writeMu.Unlock()

	if !c.qc.client || !c.wrote.Load() || !c.qc.startLinger() {
		c.str.CancelRead(quicStreamNoError)
		c.qc.release()
		return err
	}
	peerDone := make(chan struct{})
	var once sync.Once
	c.str.SetReceiveFinalSizeCallback(func(int64) { once.Do(func() { close(peerDone) }) })
	linger := func() {
		t := time.NewTimer(quicCloseLinger)
		select {
		case <-peerDone:
		case <-c.qc.conn.Context().Done():
		case <-t.C:
		}
		t.Stop()
		c.str.SetReceiveFinalSizeCallback(nil)
		c.str.CancelRead(quicStreamNoError)
		c.qc.lingering.Done()
		c.qc.release()
	}
	if c.qc.lastRef() {
		linger()
	} else {
		go linger()
	}
	return err
}

// LocalAddr implements net.Conn: the local UDP address of the connection.
func (c *streamConn) LocalAddr() net.Addr { return c.qc.conn.LocalAddr() }

// RemoteAddr implements net.Conn: the peer's UDP address. All streams of
// one connection share it.
func (c *streamConn) RemoteAddr() net.Addr { return c.qc.conn.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *streamConn) SetDeadline(t time.Time) error { return c.str.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *streamConn) SetReadDeadline(t time.Time) error { return c.str.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.str.SetWriteDeadline(t) }

// ConnectionState implements TLSConner: the TLS 1.3 state of the QUIC
// connection, complete from the start (Accept and Dial return streams of
// connections whose handshake is done).
func (c *streamConn) ConnectionState() tls.ConnectionState {
	return c.qc.conn.ConnectionState().TLS
}

func (c *streamConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "quic", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
