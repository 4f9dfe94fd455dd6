package server

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// Per-transport benchmarks over loopback, with the conformance suite's
// setups (conformanceSetups). One op is an acquire `l k 10` and the
// release `r k <token>` of its grant: two round trips on one connection.
// The client side allocates nothing per op, so allocs/op are the server's
// plus the transport's (both ends: TLS records, QUIC packets).
//
//	go test -run '^$' -bench 'LockReleaseRoundTrip|LockReleasePipelined' -benchmem ./server/

// benchTokenLen is the length of a token on the wire.
const benchTokenLen = 32

// benchConn is an allocation-free protocol client for benchmarks.
type benchConn struct {
	c    net.Conn
	r    *bufio.Reader
	ops  int
	lreq []byte // the acquire requests, back to back, all one length
	rreq []byte // the release requests, all one length; tokens filled in per op
	toks []int  // offset of each token in rreq
}

// newBenchConn wraps c for up to depth pipelined l+r pairs on keys
// k000..k<depth-1> (a single pair on key k for depth 1). c is closed when
// the benchmark ends.
func newBenchConn(tb testing.TB, c net.Conn, depth int) *benchConn {
	tb.Cleanup(func() { c.Close() })
	bc := &benchConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	for i := range depth {
		key := "k"
		if depth > 1 {
			key = fmt.Sprintf("k%03d", i)
		}
		bc.lreq = append(bc.lreq, "l\n"+key+"\n10\n"...)
		bc.rreq = append(bc.rreq, "r\n"+key+"\n"...)
		bc.toks = append(bc.toks, len(bc.rreq))
		bc.rreq = append(bc.rreq, bytes.Repeat([]byte{'0'}, benchTokenLen)...)
		bc.rreq = append(bc.rreq, '\n')
	}
	return bc
}

// pairs runs n (at most depth) pipelined l+r pairs: the n acquires in one
// write, then the n releases in one write.
func (bc *benchConn) pairs(n int) error {
	// Re-arm the deadline now and then: bounded, but off the hot path.
	if bc.ops++; bc.ops%256 == 1 {
		if err := bc.c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			return err
		}
	}
	if _, err := bc.c.Write(bc.lreq[:len(bc.lreq)/len(bc.toks)*n]); err != nil {
		return err
	}
	for i := range n {
		line, err := bc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		// "ok <token> 10\n"
		if len(line) != 3+benchTokenLen+4 || !bytes.HasPrefix(line, []byte("ok ")) {
			return fmt.Errorf("l answered %q", line)
		}
		copy(bc.rreq[bc.toks[i]:], line[3:3+benchTokenLen])
	}
	if _, err := bc.c.Write(bc.rreq[:len(bc.rreq)/len(bc.toks)*n]); err != nil {
		return err
	}
	for range n {
		line, err := bc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if !bytes.Equal(line, []byte("ok\n")) {
			return fmt.Errorf("r answered %q", line)
		}
	}
	return nil
}

// benchTransports runs fn as a sub-benchmark per registered transport,
// against its own server, with one connection opened (and used once) before
// timing starts.
func benchTransports(b *testing.B, depth int, fn func(b *testing.B, bc *benchConn)) {
	for _, name := range transport.Names() {
		b.Run(name, func(b *testing.B) {
			if conformanceSetups[name] == nil {
				b.Fatalf("transport %q has no entry in conformanceSetups", name)
			}
			ts := serveConformance(b, name, Options{})
			bc := newBenchConn(b, ts.dialConn(b), depth)
			// The first exchange opens the session (and, for QUIC, the
			// stream) and warms up the keys.
			if err := bc.pairs(depth); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			fn(b, bc)
		})
	}
}

// BenchmarkLockReleaseRoundTrip: one client, sequential l+r on one key:
// two round trips per op.
func BenchmarkLockReleaseRoundTrip(b *testing.B) {
	benchTransports(b, 1, func(b *testing.B, bc *benchConn) {
		for b.Loop() {
			if err := bc.pairs(1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchPipelineDepth is how many l+r pairs BenchmarkLockReleasePipelined
// has in flight.
const benchPipelineDepth = 16

// BenchmarkLockReleasePipelined: one client, 16 acquires on 16 keys in one
// write, then their 16 releases in one write; ns/op is per l+r pair, so
// it shows per-request cost with the round-trip latency amortized.
func BenchmarkLockReleasePipelined(b *testing.B) {
	benchTransports(b, benchPipelineDepth, func(b *testing.B, bc *benchConn) {
		for i := 0; i < b.N; i += benchPipelineDepth {
			if err := bc.pairs(min(benchPipelineDepth, b.N-i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
