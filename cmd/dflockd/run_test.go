package main

import (
	"bytes"
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listenAddr = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)

// TestRunServesAndShutsDown starts the whole command on a free port, uses
// it over TCP with an auth token, and stops it the way a signal would.
func TestRunServesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--port", "0", "--auth-token", "s3cret", "--default-lease-ttl", "7"}, &stdout, &stderr, env(nil))
	}()
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" {
		if m := listenAddr.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run exited early with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not report its address: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}

	c := testutil.Dial(t, addr)
	c.Expect("auth", "_", "s3cret", "ok")
	f := c.Fields("l", "job", "5")
	if len(f) != 3 || f[0] != "ok" || f[2] != "7" {
		t.Fatalf("l = %q; want ok <token> 7 (the configured default lease)", f)
	}

	cancel() // what SIGINT/SIGTERM do
	// Shutdown starts asynchronously; from then on the idle connection's
	// next request is answered error_draining and the connection closed.
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := c.Do("ping", "_", "")
		if got == "error_draining" {
			break
		}
		if got != "ok" || time.Now().After(deadline) {
			t.Fatalf("ping during shutdown = %q; want ok, then error_draining", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.ExpectClosed()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run = %d; want 0; log: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
}
