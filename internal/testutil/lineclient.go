package testutil

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// LineClient is a raw protocol client for end-to-end tests: it writes
// requests as bytes and reads response lines, failing the test on I/O
// errors. Every read has a deadline, so a missing answer fails fast
// instead of hanging.
type LineClient struct {
	t    testing.TB
	Conn net.Conn
	r    *bufio.Reader
}

// ReadDeadline bounds each ReadLine.
const ReadDeadline = 5 * time.Second

// Dial connects to addr over TCP and closes the connection when the test
// ends.
func Dial(t testing.TB, addr string) *LineClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &LineClient{t: t, Conn: c, r: bufio.NewReaderSize(c, 1<<20)}
}

// Send writes raw bytes.
func (c *LineClient) Send(s string) {
	c.t.Helper()
	if _, err := c.Conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Req writes one request "cmd\nkey\narg\n".
func (c *LineClient) Req(cmd, key, arg string) {
	c.t.Helper()
	c.Send(cmd + "\n" + key + "\n" + arg + "\n")
}

// ReadLine reads one line without its LF.
func (c *LineClient) ReadLine() string {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(ReadDeadline))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// Do sends one request and returns the answer line.
func (c *LineClient) Do(cmd, key, arg string) string {
	c.t.Helper()
	c.Req(cmd, key, arg)
	return c.ReadLine()
}

// Expect sends one request and fails unless the answer equals want.
func (c *LineClient) Expect(cmd, key, arg, want string) {
	c.t.Helper()
	if got := c.Do(cmd, key, arg); got != want {
		c.t.Fatalf("%s %q %q = %q; want %q", cmd, key, arg, got, want)
	}
}

// Fields sends one request and returns the answer split on spaces.
func (c *LineClient) Fields(cmd, key, arg string) []string {
	c.t.Helper()
	return strings.Fields(c.Do(cmd, key, arg))
}

// Token acquires with cmd and returns the token, failing unless the
// answer is "<want> <token> <ttl>".
func (c *LineClient) Token(cmd, key, arg, want string) string {
	c.t.Helper()
	f := c.Fields(cmd, key, arg)
	if len(f) != 3 || f[0] != want || len(f[1]) != 32 {
		c.t.Fatalf("%s %q %q = %q; want %q <token> <ttl>", cmd, key, arg, f, want)
	}
	return f[1]
}

// ExpectClosed fails unless the server closes the connection (EOF or
// reset) within the read deadline, without sending anything more.
func (c *LineClient) ExpectClosed() {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(ReadDeadline))
	b, err := c.r.ReadByte()
	if err == nil {
		rest, _ := c.r.ReadString('\n')
		c.t.Fatalf("connection still open: got %q", string(b)+rest)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed within the deadline")
	}
}
