package testutil

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback TCP address ("127.0.0.1:port") that was
// free a moment ago, for a process or node that must be told its address
// before it listens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
