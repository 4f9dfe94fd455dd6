package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Fixed answers of the echo baseline, shaped like dflockd's so that the
// same client code accepts them.
const (
	echoToken    = "00000000000000010123456789abcdef"
	echoGrant    = "ok " + echoToken + " 10\n"
	echoAcquired = "acquired " + echoToken + " 10\n"
	echoCount    = "ok 0\n"
	echoOK       = "ok\n"
)

// EchoServer is the baseline: it reads each three-line request and
// answers a fixed line chosen by the verb, without doing any work. Like
// dflockd it runs one goroutine per connection and flushes its answers
// only when no further request is already buffered, so that the two
// differ only in the work done per request.
type EchoServer struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	l      net.Listener
	closed bool
	wg     sync.WaitGroup
}

// errEchoClosed is returned by Serve after Close.
var errEchoClosed = errors.New("bench: echo server closed")

// Serve accepts connections on l until Close; it returns nil after Close.
func (s *EchoServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.l = l
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("echo accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// Close stops the listener, closes every connection and waits for their
// goroutines.
func (s *EchoServer) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.l != nil {
		s.l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *EchoServer) serve(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 4096)
	for {
		verb, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		answer := echoAnswer(verb)
		for range 2 { // key and arg lines
			if _, err := r.ReadSlice('\n'); err != nil {
				return
			}
		}
		if _, err := w.WriteString(answer); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// echoAnswer picks the fixed answer for a verb line (with its LF).
func echoAnswer(verb []byte) string {
	switch string(verb) {
	case "l\n", "sl\n", "w\n", "sw\n":
		return echoGrant
	case "e\n", "se\n":
		return echoAcquired
	case "signal\n", "n\n", "sn\n":
		return echoCount
	}
	return echoOK
}
