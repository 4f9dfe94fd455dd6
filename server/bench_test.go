package server

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dflockd/dflockd/core"
)

// Server benchmarks over loopback TCP. One op is an `l` (grant) followed
// by an `r` of its token, each a full round trip, as cmd/bench measures.
// Allocations are those of the whole process (client and server).

// lockRelease does one l+r round trip pair on w. It returns an error
// rather than failing, as RunParallel bodies must not call b.Fatal.
func lockRelease(w *wire, key, arg string) error {
	line, err := w.do("l", key, arg)
	if err != nil {
		return err
	}
	tok, ok := strings.CutPrefix(line, "ok ")
	if i := strings.IndexByte(tok, ' '); ok && i > 0 {
		tok = tok[:i]
	} else {
		return fmt.Errorf("l answered %q", line)
	}
	if line, err = w.do("r", key, tok); err != nil || line != "ok" {
		return fmt.Errorf("r answered %q, %v", line, err)
	}
	return nil
}

// BenchmarkLockReleaseTCP: one client, sequential l+r on one key.
func BenchmarkLockReleaseTCP(b *testing.B) {
	ts := start(b, Options{}, core.Options{})
	w, err := dialWire(ts.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	b.ReportAllocs()
	for b.Loop() {
		if err := lockRelease(w, "bench", "10 10"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLockReleaseTCPParallel: a connection and a key per goroutine.
func BenchmarkLockReleaseTCPParallel(b *testing.B) {
	ts := start(b, Options{}, core.Options{})
	var id atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w, err := dialWire(ts.Addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer w.close()
		key := fmt.Sprintf("bench_%d", id.Add(1))
		for pb.Next() {
			if err := lockRelease(w, key, "10 10"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLockReleaseTCPContended: a connection per goroutine, all on
// one key, so most acquires queue and are handed off.
func BenchmarkLockReleaseTCPContended(b *testing.B) {
	ts := start(b, Options{}, core.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w, err := dialWire(ts.Addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer w.close()
		for pb.Next() {
			if err := lockRelease(w, "shared", "30 10"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
