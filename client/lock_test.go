package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// TestLockTransports acquires, enqueues, waits and releases Locks and
// Semaphores over every transport, naming the server by endpoint URL.
func TestLockTransports(t *testing.T) {
	for _, name := range transports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, name, serverConfig{})
			ctx := ctxT(t)
			obs := ts.dial(t)

			l := &Lock{Key: "res", Servers: []string{ts.Addr}, TLSConfig: ts.TLS, LeaseTTL: 20}
			ok, err := l.Acquire(ctx)
			if !ok || err != nil {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			if l.Token() == "" || !held(t, obs, "res") {
				t.Fatal("lock not held after Acquire")
			}
			other := &Lock{Key: "res", Servers: []string{ts.Addr}, TLSConfig: ts.TLS, AcquireTimeout: -1}
			if ok, err := other.Acquire(ctx); ok || err != nil {
				t.Fatalf("contended try-lock = %v, %v; want false, nil", ok, err)
			}
			if other.Token() != "" {
				t.Fatal("Token set after a failed acquire")
			}
			if err := l.Release(ctx); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if l.Token() != "" || held(t, obs, "res") {
				t.Fatal("lock still held after Release")
			}
			if err := l.Release(ctx); err != nil {
				t.Fatalf("second Release: %v", err)
			}

			// Two-phase through the high-level type.
			if st, err := l.Enqueue(ctx); err != nil || st != "acquired" {
				t.Fatalf("Enqueue = %q, %v", st, err)
			}
			if st, err := other.Enqueue(ctx); err != nil || st != "queued" {
				t.Fatalf("contended Enqueue = %q, %v", st, err)
			}
			if ok, err := l.Wait(ctx, time.Second); !ok || err != nil {
				t.Fatalf("Wait after acquired = %v, %v", ok, err)
			}
			res := make(chan error, 1)
			go func() {
				ok, err := other.Wait(ctx, 10*time.Second)
				if err == nil && !ok {
					err = errors.New("wait timed out")
				}
				res <- err
			}()
			eventually(t, "other queued", func() bool { s, _ := lockStat(t, obs, "res"); return s.Waiters == 1 })
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-res; err != nil {
				t.Fatalf("Wait for hand-over: %v", err)
			}
			if other.Token() == "" {
				t.Fatal("no token after Wait")
			}
			if err := other.Close(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "released by Close", func() bool { return !held(t, obs, "res") })

			// Semaphore.
			sems := make([]*Semaphore, 3)
			for i := range sems {
				sems[i] = &Semaphore{Key: "pool", Limit: 2, Servers: []string{ts.Addr}, TLSConfig: ts.TLS, AcquireTimeout: -1}
			}
			for i, s := range sems {
				ok, err := s.Acquire(ctx)
				if err != nil || ok != (i < 2) {
					t.Fatalf("Semaphore %d Acquire = %v, %v", i, ok, err)
				}
			}
			if err := sems[0].Release(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := sems[2].Enqueue(ctx); err != nil || st != "acquired" {
				t.Fatalf("Semaphore Enqueue = %q, %v", st, err)
			}
			if ok, err := sems[2].Wait(ctx, 0); !ok || err != nil {
				t.Fatalf("Semaphore Wait = %v, %v", ok, err)
			}
			for _, s := range sems {
				if err := s.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if ok, err := (&Semaphore{Key: "pool", Limit: 5, Servers: []string{ts.Addr}, TLSConfig: ts.TLS}).Acquire(ctx); ok || !errors.Is(err, ErrLimitMismatch) {
				t.Fatalf("Semaphore with another limit = %v, %v; want ErrLimitMismatch", ok, err)
			}
		})
	}
}

// TestLockConfig checks the local validation of Lock and Semaphore
// fields.
func TestLockConfig(t *testing.T) {
	ctx := ctxT(t)
	srv := []string{"127.0.0.1:1"} // never dialled: validation comes first
	for name, l := range map[string]*Lock{
		"no key":         {Servers: srv},
		"bad key":        {Key: "a b", Servers: srv},
		"ratio 1":        {Key: "k", Servers: srv, RenewRatio: 1},
		"negative ratio": {Key: "k", Servers: srv, RenewRatio: -0.1},
		"jitter 1":       {Key: "k", Servers: srv, RenewJitter: 1},
		"negative lease": {Key: "k", Servers: srv, LeaseTTL: -1},
		"huge lease":     {Key: "k", Servers: srv, LeaseTTL: 9223372037},
		"bad shard":      {Key: "k", Servers: srv, ShardFunc: func(string, int) int { return 1 }},
	} {
		if ok, err := l.Acquire(ctx); ok || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Acquire = %v, %v; want ErrInvalid", name, ok, err)
		}
	}
	for _, limit := range []int{0, -1} {
		s := &Semaphore{Key: "k", Limit: limit, Servers: srv}
		if _, err := s.Enqueue(ctx); !errors.Is(err, ErrInvalid) {
			t.Errorf("limit %d: %v; want ErrInvalid", limit, err)
		}
	}
}

// TestLockRenewal: with a one-second lease renewed at half of it, the
// lock stays held across several lease periods.
func TestLockRenewal(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	var renewErr error
	var mu sync.Mutex
	l := &Lock{Key: "renewed", Servers: []string{ts.Addr}, LeaseTTL: 1, RenewRatio: 0.5,
		OnRenewError: func(err error) { mu.Lock(); renewErr = err; mu.Unlock() }}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	tok := l.Token()
	time.Sleep(3500 * time.Millisecond)
	c := ts.dial(t)
	if _, _, err := c.Acquire(ctx, "renewed", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("try-lock after 3.5 lease periods: %v; want ErrTimeout", err)
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost closed while renewing")
	default:
	}
	mu.Lock()
	if renewErr != nil {
		t.Fatalf("OnRenewError: %v", renewErr)
	}
	mu.Unlock()
	if l.Token() != tok {
		t.Fatal("token changed while renewing")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, _, err := c.Acquire(ctx, "renewed", 0); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
}

// TestLockLost: when the server drops the lease (here another connection
// releases it by token), the next renewal fails: OnRenewError is called,
// Lost is closed and Token becomes empty.
func TestLockLost(t *testing.T) {
	for _, sem := range []bool{false, true} {
		t.Run(fmt.Sprintf("semaphore=%v", sem), func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, "tcp", serverConfig{})
			ctx := ctxT(t)
			errs := make(chan error, 1)
			onErr := func(err error) { errs <- err }
			var (
				acquire func(context.Context) (bool, error)
				token   func() string
				lost    func() <-chan struct{}
				release func(context.Context) error
			)
			if sem {
				s := &Semaphore{Key: "k", Limit: 2, Servers: []string{ts.Addr}, LeaseTTL: 1, OnRenewError: onErr}
				acquire, token, lost, release = s.Acquire, s.Token, s.Lost, s.Release
			} else {
				l := &Lock{Key: "k", Servers: []string{ts.Addr}, LeaseTTL: 1, OnRenewError: onErr}
				acquire, token, lost, release = l.Acquire, l.Token, l.Lost, l.Release
			}
			if lost() != nil {
				t.Fatal("Lost is not nil before the first acquisition")
			}
			if ok, err := acquire(ctx); !ok || err != nil {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			tok := token()
			c := ts.dial(t)
			var err error
			if sem {
				err = c.SemRelease(ctx, "k", tok)
			} else {
				err = c.Release(ctx, "k", tok)
			}
			if err != nil {
				t.Fatalf("release by token from another conn: %v", err)
			}
			select {
			case <-lost():
			case <-time.After(5 * time.Second):
				t.Fatal("Lost not closed")
			}
			select {
			case err := <-errs:
				if !errors.Is(err, ErrServer) {
					t.Fatalf("OnRenewError(%v); want ErrServer", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("OnRenewError not called")
			}
			if token() != "" {
				t.Fatal("Token still set after the lease was lost")
			}
			if err := release(ctx); err != nil {
				t.Fatalf("Release after loss: %v", err)
			}
		})
	}
}

// TestLockAcquireCancel: cancelling a blocked Lock.Acquire leaves nothing
// held: the next client gets the lock as soon as the holder lets go.
func TestLockAcquireCancel(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	holder, obs := ts.dial(t), ts.dial(t)
	tok, _, err := holder.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lock{Key: "k", Servers: []string{ts.Addr}, AcquireTimeout: 30 * time.Second}
	cctx, cancel := context.WithCancel(ctx)
	defer whenQueued(obs, "k", 1, cancel)()
	if ok, err := l.Acquire(cctx); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire = %v, %v; want context.Canceled", ok, err)
	}
	if l.Token() != "" {
		t.Fatal("Token set after a cancelled Acquire")
	}
	eventually(t, "cancelled waiter gone", func() bool { s, _ := lockStat(t, obs, "k"); return s.Waiters == 0 })
	if err := holder.Release(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	if held(t, obs, "k") {
		t.Fatal("lock held after the holder released it")
	}
	next := &Lock{Key: "k", Servers: []string{ts.Addr}, AcquireTimeout: -1}
	if ok, err := next.Acquire(ctx); !ok || err != nil {
		t.Fatalf("next client's try-lock = %v, %v", ok, err)
	}
	defer next.Release(ctx)
	st, err := obs.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != 3 { // holder, obs, next
		t.Fatalf("%d connections; the cancelled Lock's connection is still open", st.Connections)
	}
}

// TestLockCloseDuringAcquire: Close may be called while Acquire blocks;
// Acquire then fails at once with ErrClosed and nothing is left queued.
func TestLockCloseDuringAcquire(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tls", serverConfig{})
	ctx := ctxT(t)
	obs := ts.dial(t)
	if _, _, err := obs.Acquire(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	l := &Lock{Key: "k", Servers: []string{ts.Addr}, TLSConfig: ts.TLS, AcquireTimeout: 30 * time.Second}
	defer whenQueued(obs, "k", 1, func() { l.Close() })()
	start := time.Now()
	if ok, err := l.Acquire(ctx); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire closed meanwhile = %v, %v; want ErrClosed", ok, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Acquire returned after %v", d)
	}
	eventually(t, "waiter gone", func() bool { s, _ := lockStat(t, obs, "k"); return s.Waiters == 0 })
}

// TestLockRacedGrantReleased: the best-effort release of a grant that
// raced with a cancellation frees the lock even on a server that keeps
// locks after a disconnect.
func TestLockRacedGrantReleased(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{engine: core.Options{KeepOnDisconnect: true}})
	ctx := ctxT(t)
	obs := ts.dial(t)
	c, err := Dial(ctx, ts.Addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if !held(t, obs, "k") {
		t.Fatal("server did not keep the lock after the disconnect")
	}
	cfg, err := (&Lock{Key: "k", Servers: []string{ts.Addr}}).config()
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel() // as after a cancelled Acquire
	releaseRaced(cctx, cfg, tok)
	if held(t, obs, "k") {
		t.Fatal("raced grant still held")
	}
}

// TestLockTokenAfterFailedReacquire is edge 57: Token must be empty after
// a failed re-acquire, not the previous token.
func TestLockTokenAfterFailedReacquire(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	obs := ts.dial(t)
	l := &Lock{Key: "k", Servers: []string{ts.Addr}, AcquireTimeout: -1}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if l.Token() == "" {
		t.Fatal("no token")
	}
	// Someone queues; the re-acquire closes l's old connection, which
	// hands the lock to them, so l's try-lock fails.
	w := ts.dial(t)
	res := make(chan error, 1)
	go func() { _, _, err := w.Acquire(ctx, "k", 10*time.Second); res <- err }()
	eventually(t, "waiter queued", func() bool { s, _ := lockStat(t, obs, "k"); return s.Waiters == 1 })
	if ok, err := l.Acquire(ctx); ok || err != nil {
		t.Fatalf("re-acquire = %v, %v; want false, nil", ok, err)
	}
	if tok := l.Token(); tok != "" {
		t.Fatalf("Token() = %q after a failed re-acquire; want empty", tok)
	}
	if err := <-res; err != nil {
		t.Fatalf("waiter: %v", err)
	}

	// A re-acquire that fails to connect clears it too.
	l2 := &Lock{Key: "k2", Servers: []string{ts.Addr}}
	if ok, err := l2.Acquire(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	l2.Servers = []string{dead}
	if ok, err := l2.Acquire(ctx); ok || err == nil {
		t.Fatalf("Acquire on a dead server = %v, %v; want an error", ok, err)
	}
	if l2.Token() != "" {
		t.Fatal("Token set after a failed re-acquire")
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatalf("Release with nothing held: %v", err)
	}
}

// TestLockWaitTimeout: Wait without Enqueue is ErrNotQueued; a Wait that
// times out reports (false, nil) and closes the connection (edge 57).
func TestLockWaitTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	obs := ts.dial(t)
	l := &Lock{Key: "k", Servers: []string{ts.Addr}}
	if ok, err := l.Wait(ctx, time.Second); ok || !errors.Is(err, ErrNotQueued) {
		t.Fatalf("Wait without Enqueue = %v, %v; want ErrNotQueued", ok, err)
	}
	tok, _, err := obs.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := l.Enqueue(ctx); err != nil || st != "queued" {
		t.Fatalf("Enqueue = %q, %v", st, err)
	}
	if n := ts.Server.Connections(); n != 2 {
		t.Fatalf("%d connections; want 2", n)
	}
	start := time.Now()
	if ok, err := l.Wait(ctx, time.Second); ok || err != nil {
		t.Fatalf("Wait = %v, %v; want false, nil", ok, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("Wait returned after %v; want about 1s", d)
	}
	eventually(t, "Wait's connection closed", func() bool { return ts.Server.Connections() == 1 })
	if ok, err := l.Wait(ctx, time.Second); ok || !errors.Is(err, ErrNotQueued) {
		t.Fatalf("Wait after a timeout = %v, %v; want ErrNotQueued", ok, err)
	}
	// Releasing while only queued just closes.
	if st, err := l.Enqueue(ctx); err != nil || st != "queued" {
		t.Fatalf("Enqueue = %q, %v", st, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release while queued: %v", err)
	}
	eventually(t, "queued connection closed", func() bool { return ts.Server.Connections() == 1 })
	if err := obs.Release(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	if held(t, obs, "k") {
		t.Fatal("lock granted to a closed queue entry")
	}
}

// TestLockStopStuckRenewal: a renewal stuck in I/O is cut off by
// Release after about two seconds, without calling OnRenewError.
func TestLockStopStuckRenewal(t *testing.T) {
	t.Parallel()
	// A fake server that grants "l" and never answers anything else.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	renewSeen := make(chan struct{}, 1)
	wg.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		for {
			var lines [3]string
			for i := range lines {
				if lines[i], err = r.ReadString('\n'); err != nil {
					return
				}
			}
			switch strings.TrimSpace(lines[0]) {
			case "l":
				fmt.Fprintf(nc, "ok 0123456789abcdef0123456789abcdef 10\n")
			case "n":
				select {
				case renewSeen <- struct{}{}:
				default:
				}
			}
		}
	})
	calledErr := make(chan error, 1)
	l := &Lock{Key: "k", Servers: []string{ln.Addr().String()}, LeaseTTL: 10, RenewRatio: 0.01, NoSession: true,
		OnRenewError: func(err error) { calledErr <- err }}
	ctx := ctxT(t)
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	select {
	case <-renewSeen:
	case <-time.After(5 * time.Second):
		t.Fatal("no renewal sent")
	}
	start := time.Now()
	err = l.Release(ctx)
	d := time.Since(start)
	if d < renewStopGrace-100*time.Millisecond || d > renewStopGrace+2*time.Second {
		t.Fatalf("Release took %v; want about %v", d, renewStopGrace)
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Release = %v; want ErrClosed (the connection was force-closed)", err)
	}
	select {
	case err := <-calledErr:
		t.Fatalf("OnRenewError(%v) called for a deliberate stop", err)
	default:
	}
}

// TestShardVectors checks CRC32Shard against values computed
// independently (Python: zlib.crc32(key.encode()) % n).
func TestShardVectors(t *testing.T) {
	if got := crc32.ChecksumIEEE([]byte("a")); got != 0xe8b7be43 {
		t.Fatalf("crc32(a) = %#x", got)
	}
	for _, v := range []struct {
		key    string
		n3, n5 int
	}{
		{"a", 0, 2}, {"b", 2, 1}, {"c", 0, 0}, {"foo", 2, 4}, {"bar", 2, 3},
		{"my-resource", 0, 3}, {"lock:1", 1, 1}, {"job-42", 2, 1}, {"orders", 2, 2},
		{"", 0, 0}, {" ", 2, 2}, {"été", 0, 2},
	} {
		if got := CRC32Shard(v.key, 3); got != v.n3 {
			t.Errorf("CRC32Shard(%q, 3) = %d; want %d", v.key, got, v.n3)
		}
		if got := CRC32Shard(v.key, 5); got != v.n5 {
			t.Errorf("CRC32Shard(%q, 5) = %d; want %d", v.key, got, v.n5)
		}
		if got := CRC32Shard(v.key, 1); got != 0 {
			t.Errorf("CRC32Shard(%q, 1) = %d", v.key, got)
		}
		for _, n := range []int{0, -1} {
			if got := CRC32Shard(v.key, n); got != 0 {
				t.Errorf("CRC32Shard(%q, %d) = %d; want 0", v.key, n, got)
			}
		}
	}
	// Spread: 3000 keys over 3 servers, each within 15% of a third.
	var count [3]int
	for i := range 3000 {
		count[CRC32Shard(fmt.Sprintf("key-%d", i), 3)]++
	}
	for i, c := range count {
		if c < 850 || c > 1150 {
			t.Errorf("server %d got %d of 3000 keys: %v", i, c, count)
		}
	}
}

// TestLockSharding: Locks go to the server CRC32Shard picks, or the one
// a custom ShardFunc picks.
func TestLockSharding(t *testing.T) {
	t.Parallel()
	s := []*testServer{startServer(t, "tcp", serverConfig{}), startServer(t, "tcp", serverConfig{}), startServer(t, "tcp", serverConfig{})}
	servers := []string{s[0].Addr, s[1].Addr, s[2].Addr}
	obs := []*Conn{s[0].dial(t), s[1].dial(t), s[2].dial(t)}
	ctx := ctxT(t)
	for key, want := range map[string]int{"a": 0, "b": 2, "lock:1": 1, "foo": 2, "my-resource": 0} {
		l := &Lock{Key: key, Servers: servers}
		if ok, err := l.Acquire(ctx); !ok || err != nil {
			t.Fatalf("Acquire %s = %v, %v", key, ok, err)
		}
		for i := range s {
			if got := held(t, obs[i], key); got != (i == want) {
				t.Errorf("key %q held on server %d: %v; want it on server %d only", key, i, got, want)
			}
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	l := &Semaphore{Key: "a", Limit: 2, Servers: servers, ShardFunc: func(string, int) int { return 1 }}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	defer l.Release(ctx)
	st, err := obs[1].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Semaphores) != 1 || st.Semaphores[0].Key != "a" {
		t.Fatalf("custom ShardFunc: server 1 stats %+v", st.Semaphores)
	}
}

// TestFenceFromToken parses fencing numbers and checks that the server's
// grants carry increasing ones.
func TestFenceFromToken(t *testing.T) {
	for tok, want := range map[string]uint64{
		"00000000000000ff0123456789abcdef": 255,
		"0000000000000001ffffffffffffffff": 1,
		"FFFFFFFFFFFFFFFF0000000000000000": 1<<64 - 1,
		"8000000000000000aaaaaaaaaaaaaaaa": 1 << 63,
	} {
		if got, err := FenceFromToken(tok); err != nil || got != want {
			t.Errorf("FenceFromToken(%q) = %d, %v; want %d", tok, got, err, want)
		}
	}
	for _, tok := range []string{"", "abc", "00000000000000ff0123456789abcdeg", "00000000000000ff0123456789abcdef0", "0x000000000000ff0123456789abcdef"} {
		if _, err := FenceFromToken(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("FenceFromToken(%q): %v; want ErrInvalid", tok, err)
		}
	}
	ts := startServer(t, "tcp", serverConfig{})
	c := ts.dial(t)
	ctx := ctxT(t)
	var last uint64
	for i := range 5 {
		tok, _, err := c.Acquire(ctx, fmt.Sprintf("f%d", i%2), 0)
		if err != nil {
			t.Fatal(err)
		}
		f, err := FenceFromToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		if f <= last {
			t.Fatalf("fence %d after %d", f, last)
		}
		last = f
		if err := c.Release(ctx, fmt.Sprintf("f%d", i%2), tok); err != nil {
			t.Fatal(err)
		}
	}
}
