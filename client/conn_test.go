package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/server"
)

// TestConnCommands runs every protocol command through a Conn over every
// transport.
func TestConnCommands(t *testing.T) {
	for _, name := range transports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, name, serverConfig{})
			ctx := ctxT(t)
			a, b := ts.dial(t), ts.dial(t)

			if err := a.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}

			// Lock: acquire, contend, renew, release.
			tok, ttl, err := a.Acquire(ctx, "job", time.Second, WithLeaseTTL(30))
			if err != nil || tok == "" || ttl != 30 {
				t.Fatalf("Acquire = %q, %d, %v; want token, 30, nil", tok, ttl, err)
			}
			if _, _, err := b.Acquire(ctx, "job", 0); !errors.Is(err, ErrTimeout) {
				t.Fatalf("contended try-lock: %v; want ErrTimeout", err)
			}
			if n, err := a.Renew(ctx, "job", tok, WithLeaseTTL(45)); err != nil || n != 45 {
				t.Fatalf("Renew = %d, %v; want 45", n, err)
			}
			if n, err := b.Renew(ctx, "job", tok); err != nil || n != 33 { // any conn; server default
				t.Fatalf("Renew from another conn = %d, %v; want 33", n, err)
			}
			if err := a.Release(ctx, "job", "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrServer) {
				t.Fatalf("Release with a wrong token: %v; want ErrServer", err)
			}
			if err := a.Release(ctx, "job", tok); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if _, err := a.Renew(ctx, "job", tok); !errors.Is(err, ErrServer) {
				t.Fatalf("Renew after release: %v; want ErrServer", err)
			}

			// Two-phase.
			if _, _, err := a.Wait(ctx, "two", 0); !errors.Is(err, ErrNotQueued) {
				t.Fatalf("Wait without Enqueue: %v; want ErrNotQueued", err)
			}
			st, tok, ttl, err := a.Enqueue(ctx, "two")
			if err != nil || st != "acquired" || tok == "" || ttl != 33 {
				t.Fatalf("Enqueue = %q, %q, %d, %v; want acquired", st, tok, ttl, err)
			}
			if _, _, _, err := a.Enqueue(ctx, "two"); !errors.Is(err, ErrAlreadyQueued) {
				t.Fatalf("second Enqueue: %v; want ErrAlreadyQueued", err)
			}
			st, _, _, err = b.Enqueue(ctx, "two", WithLeaseTTL(5))
			if err != nil || st != "queued" {
				t.Fatalf("contended Enqueue = %q, %v; want queued", st, err)
			}
			if tok2, _, err := a.Wait(ctx, "two", 0); err != nil || tok2 != tok {
				t.Fatalf("Wait after acquired = %q, %v; want %q", tok2, err, tok)
			}
			done := make(chan error, 1)
			go func() {
				_, ttl, err := b.Wait(ctx, "two", 10*time.Second)
				if err == nil && ttl != 5 {
					err = errors.New("wrong lease")
				}
				done <- err
			}()
			eventually(t, "b waiting", func() bool { l, _ := lockStat(t, a, "two"); return l.Waiters == 1 })
			if err := a.Release(ctx, "two", tok); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("Wait after hand-over: %v", err)
			}

			// Semaphore.
			t1, _, err := a.SemAcquire(ctx, "pool", 0, 2)
			if err != nil {
				t.Fatalf("SemAcquire: %v", err)
			}
			t2, _, err := b.SemAcquire(ctx, "pool", 0, 2, WithLeaseTTL(7))
			if err != nil {
				t.Fatalf("SemAcquire 2: %v", err)
			}
			if _, _, err := b.SemAcquire(ctx, "pool", 0, 2); !errors.Is(err, ErrTimeout) {
				t.Fatalf("third slot: %v; want ErrTimeout", err)
			}
			if _, _, err := b.SemAcquire(ctx, "pool", 0, 3); !errors.Is(err, ErrLimitMismatch) {
				t.Fatalf("other limit: %v; want ErrLimitMismatch", err)
			}
			if n, err := a.SemRenew(ctx, "pool", t2, WithLeaseTTL(9)); err != nil || n != 9 {
				t.Fatalf("SemRenew = %d, %v", n, err)
			}
			if err := a.Release(ctx, "pool", t1); !errors.Is(err, ErrServer) {
				t.Fatalf("lock release of a semaphore slot: %v; want ErrServer", err)
			}
			if err := a.SemRelease(ctx, "pool", t1); err != nil {
				t.Fatalf("SemRelease: %v", err)
			}
			st, _, _, err = a.SemEnqueue(ctx, "pool", 2)
			if err != nil || st != "acquired" {
				t.Fatalf("SemEnqueue = %q, %v", st, err)
			}
			st, _, _, err = b.SemEnqueue(ctx, "pool", 2)
			if err != nil || st != "queued" {
				t.Fatalf("SemEnqueue 2 = %q, %v", st, err)
			}
			if _, _, err := b.SemWait(ctx, "pool", 0); !errors.Is(err, ErrTimeout) {
				t.Fatalf("SemWait poll: %v; want ErrTimeout", err)
			}
			if _, _, err := b.SemWait(ctx, "pool", 0); !errors.Is(err, ErrNotQueued) {
				t.Fatalf("SemWait after timeout: %v; want ErrNotQueued", err)
			}
			if err := b.SemRelease(ctx, "pool", t2); err != nil {
				t.Fatalf("SemRelease: %v", err)
			}

			// Stats, typed and raw.
			stats, err := a.Stats(ctx)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if stats.Connections != 2 || len(stats.Semaphores) != 1 || stats.Semaphores[0].Key != "pool" ||
				stats.Semaphores[0].Limit != 2 || stats.Semaphores[0].Holders != 1 {
				t.Fatalf("Stats = %+v", stats)
			}
			if len(stats.Clients) != 2 || stats.Clients[0].Transport != name {
				t.Fatalf("Stats.Clients = %+v; want 2 over %s", stats.Clients, name)
			}
			wantTotals := StatsTotals{Locks: len(stats.Locks), Semaphores: 1, IdleLocks: len(stats.IdleLocks),
				IdleSemaphores: len(stats.IdleSemaphores), SignalChannels: len(stats.SignalChannels), Clients: 2}
			if stats.Totals == nil || *stats.Totals != wantTotals || stats.Truncated {
				t.Fatalf("Stats.Totals = %+v, Truncated %v; want %+v, not truncated",
					stats.Totals, stats.Truncated, wantTotals)
			}
			raw, err := a.StatsRaw(ctx)
			if err != nil {
				t.Fatalf("StatsRaw: %v", err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("StatsRaw is not a JSON object: %v", err)
			}
			for _, k := range []string{"connections", "locks", "semaphores", "idle_locks", "idle_semaphores", "signal_channels"} {
				if _, ok := m[k]; !ok {
					t.Errorf("StatsRaw lacks %q: %s", k, raw)
				}
			}

			// Emit without listeners.
			if n, err := a.Emit(ctx, "events.x", "hello world"); err != nil || n != 0 {
				t.Fatalf("Emit = %d, %v; want 0", n, err)
			}
		})
	}
}

// TestConnValidation checks that bad arguments are refused before
// anything is sent: the connection stays in step and usable.
func TestConnValidation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	c := ts.dial(t)
	ctx := ctxT(t)
	tok := "0123456789abcdef0123456789abcdef"
	long := strings.Repeat("k", 257)
	cases := map[string]error{}
	_, _, cases["empty key"] = c.Acquire(ctx, "", time.Second)
	_, _, cases["key with space"] = c.Acquire(ctx, "a b", time.Second)
	_, _, cases["key with LF"] = c.Acquire(ctx, "a\nb", time.Second)
	_, _, cases["long key"] = c.Acquire(ctx, long, time.Second)
	_, _, cases["negative timeout"] = c.Acquire(ctx, "k", -time.Second)
	_, _, cases["huge timeout"] = c.Acquire(ctx, "k", time.Duration(1<<63-1))
	_, _, cases["negative lease"] = c.Acquire(ctx, "k", 0, WithLeaseTTL(-1))
	_, _, cases["huge lease"] = c.Acquire(ctx, "k", 0, WithLeaseTTL(9223372037))
	_, _, cases["zero limit"] = c.SemAcquire(ctx, "k", 0, 0)
	_, _, _, cases["negative limit"] = c.SemEnqueue(ctx, "k", -2)
	cases["empty token"] = c.Release(ctx, "k", "")
	cases["blank token"] = c.Release(ctx, "k", "  \t")
	cases["token with LF"] = c.Release(ctx, "k", tok+"\n")
	cases["token with CR"] = c.SemRelease(ctx, "k", tok+"\r")
	_, cases["token with space"] = c.Renew(ctx, "k", "ab cd")
	_, _, cases["negative wait"] = c.Wait(ctx, "k", -1)
	_, cases["wildcard channel"] = c.Emit(ctx, "a.*", "x")
	_, cases["blank payload"] = c.Emit(ctx, "a", "   ")
	_, cases["payload with LF"] = c.Emit(ctx, "a", "x\ny")
	_, cases["oversized payload"] = c.Emit(ctx, "a", strings.Repeat("x", 65536-4-1-1+1))
	for name, err := range cases {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
	if n, err := c.Emit(ctx, "a", strings.Repeat("x", 65536-4-1-1)); err != nil || n != 0 {
		t.Errorf("largest payload: %d, %v", n, err)
	}
	if _, _, err := c.Acquire(ctx, "k", 0, WithLeaseTTL(9223372036)); err != nil {
		t.Errorf("largest lease: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after local rejections: %v", err)
	}
	if _, err := Dial(ctx, ts.Addr, Options{AuthToken: "a\nb"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("auth token with LF: %v; want ErrInvalid", err)
	}
	if _, err := Dial(ctx, ts.Addr, Options{Transport: "unix"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("scheme/transport mismatch: %v; want ErrInvalid", err)
	}
	if _, err := Dial(ctx, "nope://x", Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown transport: %v; want ErrInvalid", err)
	}
}

// TestSeconds checks the rounding of durations to wire seconds.
func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "0",
		time.Nanosecond:          "1",
		time.Second:              "1",
		1200 * time.Millisecond:  "2",
		2 * time.Second:          "2",
		90 * time.Minute:         "5400",
		9223372036 * time.Second: "9223372036",
	} {
		if got, err := seconds("timeout", d); err != nil || got != want {
			t.Errorf("seconds(%v) = %q, %v; want %q", d, got, err, want)
		}
	}
	for _, d := range []time.Duration{-1, -time.Second, 9223372036*time.Second + 1} {
		if _, err := seconds("timeout", d); !errors.Is(err, ErrInvalid) {
			t.Errorf("seconds(%v): %v; want ErrInvalid", d, err)
		}
	}
}

// TestConnDialForms dials the same servers by bare address, by endpoint
// URL and by explicit transport.
func TestConnDialForms(t *testing.T) {
	t.Parallel()
	tcp := startServer(t, "tcp", serverConfig{})
	tl := startServer(t, "tls", serverConfig{})
	ctx := ctxT(t)
	bare := strings.TrimPrefix(tcp.Addr, "tcp://")
	tlsBare := strings.TrimPrefix(tl.Addr, "tls://")
	for name, dial := range map[string]func() (*Conn, error){
		"bare tcp":           func() (*Conn, error) { return Dial(ctx, bare, Options{}) },
		"explicit tcp":       func() (*Conn, error) { return Dial(ctx, bare, Options{Transport: "tcp"}) },
		"bare with TLS":      func() (*Conn, error) { return Dial(ctx, tlsBare, Options{TLS: tl.TLS}) },
		"explicit tls":       func() (*Conn, error) { return Dial(ctx, tlsBare, Options{Transport: "tls", TLS: tl.TLS}) },
		"url, same explicit": func() (*Conn, error) { return Dial(ctx, tl.Addr, Options{Transport: "TLS", TLS: tl.TLS}) },
	} {
		c, err := dial()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := c.Ping(ctx); err != nil {
			t.Errorf("%s: Ping: %v", name, err)
		}
		c.Close()
	}
}

// TestConnAuth covers the auth handshake.
func TestConnAuth(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tls", serverConfig{server: server.Options{Auth: auth.Token("s3cret")}})
	ctx := ctxT(t)
	opts := ts.Opts()
	opts.AuthToken = "s3cret"
	c, err := Dial(ctx, ts.Addr, opts)
	if err != nil {
		t.Fatalf("Dial with the right token: %v", err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after auth: %v", err)
	}
	opts.AuthToken = "wrong"
	if _, err := Dial(ctx, ts.Addr, opts); !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial with a wrong token: %v; want ErrAuth", err)
	}
	noAuth, err := Dial(ctx, ts.Addr, ts.Opts())
	if err != nil {
		t.Fatal(err)
	}
	defer noAuth.Close()
	if err := noAuth.Ping(ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("Ping without auth: %v; want ErrAuth", err)
	}
	if err := noAuth.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after error_auth: %v; want ErrClosed", err)
	}

	l := &Lock{Key: "k", Servers: []string{ts.Addr}, TLSConfig: ts.TLS, AuthToken: "s3cret"}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Lock with AuthToken: %v, %v", ok, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConnCancel: a context that ends during a blocked acquire closes the
// connection, returns the context's error, and leaves nothing held or
// queued.
func TestConnCancel(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	holder, obs := ts.dial(t), ts.dial(t)
	ctx := ctxT(t)
	tok, _, err := holder.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	cctx, cancel := context.WithCancel(ctx)
	defer whenQueued(obs, "k", 1, cancel)()
	start := time.Now()
	if _, _, err := c.Acquire(cctx, "k", 30*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled Acquire took %v", d)
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after cancel: %v; want ErrClosed", err)
	}
	eventually(t, "waiter gone", func() bool { l, _ := lockStat(t, obs, "k"); return l.Waiters == 0 })
	if err := holder.Release(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	if held(t, obs, "k") {
		t.Fatal("the cancelled waiter was granted the lock")
	}

	// A context already done leaves the Conn untouched.
	done, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := obs.Ping(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a done context: %v", err)
	}
	if err := obs.Ping(ctx); err != nil {
		t.Fatalf("Ping after a refused call: %v", err)
	}

	// A deadline works the same way.
	dctx, cancel3 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel3()
	if _, _, err := holder.Acquire(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := obs.Acquire(dctx, "k", 30*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v; want DeadlineExceeded", err)
	}
}

// TestConnClose: Close is idempotent and fails later calls with ErrClosed.
func TestConnClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "unix", serverConfig{})
	c := ts.dial(t)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close: %v; want ErrClosed", err)
	}
}
