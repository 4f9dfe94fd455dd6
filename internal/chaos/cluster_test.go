package chaos

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/inproc"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// cluster is one in-process server (one engine) listening on every
// available transport at once.
type cluster struct {
	engine     *core.Engine
	srv        *server.Server
	transports []string // the transports it listens on
	eps        map[string]transport.Endpoint
	cliTLS     *tls.Config
}

// startCluster starts the server and stops it when the test ends.
func startCluster(t testing.TB, eo core.Options, so server.Options) *cluster {
	t.Helper()
	s, err := inproc.Start(context.Background(), inproc.Config{Server: so, Engine: eo}, "tcp", "tls", "unix", "quic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, name := range s.Missing {
		t.Logf("transport %s not available, left out", name)
	}
	// Resume TLS sessions, as long-lived clients do: it keeps the cost of
	// thousands of TLS and QUIC handshakes within the tests' time budget.
	cliTLS := s.ClientTLS.Clone()
	cliTLS.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	return &cluster{engine: s.Engine, srv: s.Server, transports: s.Transports, eps: s.Endpoints, cliTLS: cliTLS}
}

// dial opens a raw protocol connection over the named transport.
func (cl *cluster) dial(ctx context.Context, name string) (*rawConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, cl.eps[name], transport.Options{TLS: cl.cliTLS})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", name, err)
	}
	rc := &rawConn{
		transport: name,
		c:         c,
		resp:      make(chan string, 16),
		done:      make(chan struct{}),
	}
	go rc.read()
	return rc, nil
}

// answerTimeout bounds the wait for any answer. Blocking requests in the
// tests wait at most a few seconds on the server, so this only trips when
// an answer is lost.
const answerTimeout = 20 * time.Second

// rawConn is a minimal protocol client that does not need a testing.T, so
// that hundreds of goroutines can use it: requests are written as bytes,
// and a reader goroutine counts pushed signals and passes answers on.
type rawConn struct {
	transport string
	c         net.Conn
	resp      chan string
	sigs      atomic.Int64 // signal frames received
	closing   atomic.Bool

	done    chan struct{} // closed when read returns
	readErr error         // set before done is closed
	closeMu sync.Once
}

func (rc *rawConn) read() {
	defer close(rc.done)
	br := bufio.NewReaderSize(rc.c, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			rc.readErr = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, "sig ") {
			rc.sigs.Add(1)
			continue
		}
		select {
		case rc.resp <- line:
		default:
			rc.readErr = fmt.Errorf("unsolicited answer %q", line)
			return
		}
	}
}

// send writes one request without waiting for its answer.
func (rc *rawConn) send(cmd, key, arg string) error {
	_ = rc.c.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := rc.c.Write([]byte(cmd + "\n" + key + "\n" + arg + "\n")); err != nil {
		return fmt.Errorf("%s %s %q over %s: write: %w", cmd, key, arg, rc.transport, err)
	}
	return nil
}

// do sends one request and returns its answer.
func (rc *rawConn) do(cmd, key, arg string) (string, error) {
	if err := rc.send(cmd, key, arg); err != nil {
		return "", err
	}
	t := time.NewTimer(answerTimeout)
	defer t.Stop()
	select {
	case line := <-rc.resp:
		return line, nil
	case <-rc.done:
		select {
		case line := <-rc.resp:
			return line, nil
		default:
		}
		return "", fmt.Errorf("%s %s %q over %s: connection lost: %w", cmd, key, arg, rc.transport, rc.readErr)
	case <-t.C:
		return "", fmt.Errorf("%s %s %q over %s: no answer within %v", cmd, key, arg, rc.transport, answerTimeout)
	}
}

// close closes the connection and waits for the reader. abrupt resets a
// TCP connection (RST) instead of closing it in order.
func (rc *rawConn) close(abrupt bool) {
	rc.closeMu.Do(func() {
		rc.closing.Store(true)
		if abrupt {
			c := rc.c
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		}
		_ = rc.c.Close()
		<-rc.done
	})
}

// localAddr is the address the server reports for this client in stats.
func (rc *rawConn) localAddr() string { return rc.c.LocalAddr().String() }
