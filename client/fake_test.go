package client

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/dflockd/dflockd/protocol"
)

// fakeServer answers each request read on one connection with the
// scripted lines for its verb, so that the client can be shown replies a
// real server never sends.
func fakeServer(t *testing.T, answers map[string][]string) string {
	t.Helper()
	addr, _ := fakeServerLog(t, answers)
	return addr
}

// fakeServerLog is fakeServer that also returns the verbs received so far,
// in order.
func fakeServerLog(t *testing.T, answers map[string][]string) (addr string, verbs func() []string) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []string
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				r := bufio.NewReader(nc)
				for {
					var lines [3]string
					for i := range lines {
						if lines[i], err = r.ReadString('\n'); err != nil {
							return
						}
					}
					verb := strings.TrimSpace(lines[0])
					mu.Lock()
					got = append(got, verb)
					mu.Unlock()
					for _, a := range answers[verb] {
						if _, err := fmt.Fprint(nc, a+"\n"); err != nil {
							return
						}
					}
				}
			})
		}
	})
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestConnReplies: push frames are skipped on a plain Conn, stats lines up
// to MaxResponseLine are accepted, and malformed or unexpected replies are
// ErrServer.
func TestConnReplies(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pad := strings.Repeat("x", 900<<10)
	addr := fakeServer(t, map[string][]string{
		"ping":   {"sig a.b hello", "sig c x", "ok"},
		"stats":  {`ok {"connections":7,"locks":[],"semaphores":[],"idle_locks":[],"idle_semaphores":[],"signal_channels":[],"pad":"` + pad + `"}`},
		"l":      {"acquired tok 3"},
		"r":      {"bogus words"},
		"n":      {"ok"},
		"signal": {"ok " + strings.Repeat("y", MaxResponseLine)},
		"e":      {"error_draining"},
	})
	c, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping past push frames: %v", err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st.Connections != 7 {
		t.Fatalf("Stats with a 900 KiB line = %+v, %v", st, err)
	}
	if _, _, err := c.Acquire(ctx, "k", 0); !errors.Is(err, ErrServer) {
		t.Fatalf("Acquire answered acquired: %v; want ErrServer", err)
	}
	if _, err := c.Renew(ctx, "k", "tok"); !errors.Is(err, ErrServer) {
		t.Fatalf("Renew answered bare ok: %v; want ErrServer", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after unexpected but well-formed replies: %v", err)
	}
	if err := c.Release(ctx, "k", "tok"); !errors.Is(err, ErrServer) {
		t.Fatalf("Release answered garbage: %v; want ErrServer", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after a malformed reply: %v; want ErrClosed", err)
	}

	c2, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Emit(ctx, "ch", "p"); !errors.Is(err, protocol.ErrLineTooLong) {
		t.Fatalf("reply over MaxResponseLine: %v; want ErrLineTooLong", err)
	}
	if err := c2.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after an oversized reply: %v; want ErrClosed", err)
	}

	c3, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, _, _, err := c3.Enqueue(ctx, "k"); !errors.Is(err, ErrDraining) {
		t.Fatalf("Enqueue answered error_draining: %v; want ErrDraining", err)
	}
	if err := c3.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after error_draining: %v; want ErrClosed", err)
	}
}
