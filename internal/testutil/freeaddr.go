package testutil

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// FreeAddr returns a loopback TCP address ("127.0.0.1:port") that was
// free a moment ago, for a process or node that must be told its address
// before it listens (raft peers, re-executed servers).
//
// The port is picked at random below Linux's ephemeral range (32768 and
// up by default), never with port 0: a port the kernel handed out for a
// listener that was then closed may next become the local port of any
// outgoing connection (a cluster opens many), and the bind that follows
// would then fail with "address already in use". Below that range only
// another listener can take it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		l.Close()
		return addr
	}
	t.Fatal("testutil: no free loopback port between 20000 and 32000")
	return ""
}
