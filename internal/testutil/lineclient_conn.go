package testutil

import (
	"bufio"
	"net"
	"testing"
)

// NewLineClient wraps an established connection, of any transport, in a
// LineClient. The connection is closed when the test ends.
func NewLineClient(t testing.TB, c net.Conn) *LineClient {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	return &LineClient{t: t, Conn: c, r: bufio.NewReaderSize(c, 1<<20)}
}
