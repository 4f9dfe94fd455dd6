package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// maxResponse bounds a response line read by the bench: grants and
// numbers are short; stats bodies are never requested, and signal frames
// carry at most a 64 KiB payload.
const maxResponse = protocol.MaxLongLine + 512

// conn is the bench's protocol connection: requests are appended to a
// write buffer and sent with flush, responses are read one line at a time.
// It allocates nothing per request once warm, so the client side costs
// the same whether it talks to dflockd or to the echo baseline.
type conn struct {
	nc  net.Conn
	dec *protocol.Decoder
	out []byte
}

// errUnexpected marks an answer the bench did not expect (a "timeout",
// an error status, or a malformed line).
var errUnexpected = errors.New("unexpected answer")

// dial opens one connection to ep and, when token is set, authenticates.
func dial(ctx context.Context, ep transport.Endpoint, opts transport.Options, token string) (*conn, error) {
	nc, err := transport.Dial(ctx, ep, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", ep, err)
	}
	c := &conn{nc: nc, dec: protocol.NewDecoder(nc), out: make([]byte, 0, 4096)}
	if token != "" {
		c.request(protocol.CmdAuth, "_", token)
		if err := c.flush(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("auth on %s: %w", ep, err)
		}
		line, err := c.line()
		if err == nil && string(line) != "ok" {
			err = fmt.Errorf("%w: %q", errUnexpected, line)
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("auth on %s: %w", ep, err)
		}
	}
	return c, nil
}

// close closes the connection.
func (c *conn) close() error { return c.nc.Close() }

// request appends one request to the write buffer.
func (c *conn) request(cmd protocol.Command, key, arg string) {
	c.out = protocol.AppendRequest(c.out, cmd, key, arg)
}

// requestToken appends "<cmd>\n<key>\n<token>\n" without converting the
// token to a string.
func (c *conn) requestToken(cmd protocol.Command, key string, token []byte) {
	c.out = append(c.out, cmd.String()...)
	c.out = append(c.out, '\n')
	c.out = append(c.out, key...)
	c.out = append(c.out, '\n')
	c.out = append(c.out, token...)
	c.out = append(c.out, '\n')
}

// flush writes the buffered requests.
func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// line reads one response line (without its LF). The slice is valid until
// the next read.
func (c *conn) line() ([]byte, error) {
	line, err := c.dec.ReadLine(maxResponse)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return line, nil
}

// buffered reports whether a response is already waiting in the read
// buffer, so a pipelining worker knows whether to flush before reading.
func (c *conn) buffered() bool { return c.dec.Buffered() > 0 }

// grant parses "<status> <token> <secs>" and copies the token into dst[:0].
func grant(line []byte, status string, dst []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(line, []byte(status))
	if !ok || len(rest) < 2 || rest[0] != ' ' {
		return dst, fmt.Errorf("%w: %q (want %s <token> <secs>)", errUnexpected, line, status)
	}
	tok, _, ok := bytes.Cut(rest[1:], []byte{' '})
	if !ok || len(tok) == 0 {
		return dst, fmt.Errorf("%w: %q (want %s <token> <secs>)", errUnexpected, line, status)
	}
	return append(dst[:0], tok...), nil
}

// expectOK checks for a bare "ok" or "ok <anything>".
func expectOK(line []byte) error {
	if string(line) == "ok" || bytes.HasPrefix(line, []byte("ok ")) {
		return nil
	}
	return fmt.Errorf("%w: %q (want ok)", errUnexpected, line)
}

// seconds renders a whole number of seconds for a request argument.
func seconds(n int64) string { return strconv.FormatInt(n, 10) }
