package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/internal/faultproxy"
	"github.com/dflockd/dflockd/server"
)

// proxied is a TCP test server behind a fault-injecting proxy.
type proxied struct {
	*testServer
	proxy *faultproxy.Proxy
	// Addr of the proxy, for clients that should see the faults.
	via string
}

// startProxied runs a TCP server and a faultproxy in front of it; both
// stop when the test ends.
func startProxied(t testing.TB, cfg serverConfig) *proxied {
	t.Helper()
	ts := startServer(t, "tcp", cfg)
	p, err := faultproxy.Listen(t.Context(), strings.TrimPrefix(ts.Addr, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &proxied{testServer: ts, proxy: p, via: p.Addr()}
}

// TestSignalReconnect: with WithReconnect, a SignalConn whose connection is
// cut dials again and re-issues its listens (with their groups, without
// the ones it unlistened), so signals flow again; signals emitted while it
// cannot connect are lost. Without the option, the cut ends it.
func TestSignalReconnect(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	s, err := NewSignalConn(ctx, ps.via, Options{}, WithReconnect(0), WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain, err := NewSignalConn(ctx, ps.via, Options{}, WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pub := ps.dial(t) // direct: never cut

	for _, l := range []struct {
		pattern string
		opts    []ListenOption
	}{{"a.*", nil}, {"jobs", []ListenOption{WithGroup("workers")}}, {"gone", nil}} {
		if err := s.Listen(ctx, l.pattern, l.opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unlisten(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := plain.Listen(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	emit := func(ch, payload string, want int) {
		t.Helper()
		if n, err := pub.Emit(ctx, ch, payload); err != nil || n != want {
			t.Fatalf("Emit(%s) = %d, %v; want %d receivers", ch, n, err, want)
		}
	}
	emit("a.1", "before", 1)
	emit("plain", "before", 1)
	for _, sc := range []*SignalConn{s, plain} {
		if sig := recvSignal(t, sc); sig.Payload != "before" {
			t.Fatalf("signal %+v", sig)
		}
	}

	if n := ps.proxy.CutAll(); n != 2 {
		t.Fatalf("cut %d connections; want 2", n)
	}
	eventually(t, "the SignalConn to reconnect and listen again", func() bool { return s.Reconnects() == 1 })
	// The server drops the cut connection's listens when it notices the
	// cut, which may be after the new connection listened again.
	onlyNew := func() bool {
		st, err := pub.Stats(ctx)
		if err != nil {
			return false
		}
		n := 0
		for _, ch := range st.SignalChannels {
			n += ch.Listeners
		}
		return n == 2 // a.* and the group jobs of the new connection
	}
	eventually(t, "the cut connections' listens to go", onlyNew)
	emit("a.2", "after", 1)
	if sig := recvSignal(t, s); sig != (Signal{Channel: "a.2", Payload: "after"}) {
		t.Fatalf("signal after reconnecting %+v", sig)
	}
	emit("jobs", "job", 1) // the group came back
	if sig := recvSignal(t, s); sig.Channel != "jobs" {
		t.Fatalf("group signal %+v", sig)
	}
	emit("gone", "x", 0) // unlistened before the cut: not re-issued

	// The plain SignalConn ended with the cut.
	select {
	case _, ok := <-plain.Signals():
		if ok {
			t.Fatal("the plain SignalConn delivered a signal after the cut")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plain SignalConn's Signals not closed after the cut")
	}
	if plain.Err() == nil {
		t.Fatal("plain SignalConn: Err = nil after a cut")
	}

	// An outage: what is emitted meanwhile is lost.
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	eventually(t, "reconnection attempts to be refused", func() bool { return ps.proxy.Refused() >= 2 })
	eventually(t, "the server to drop the cut connection's listens", func() bool {
		st, err := pub.Stats(ctx)
		return err == nil && len(st.SignalChannels) == 0
	})
	emit("a.3", "lost", 0)
	if err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping while disconnected = %v; want ErrClosed", err)
	}
	ps.proxy.Refuse(false)
	eventually(t, "the SignalConn to reconnect after the outage", func() bool { return s.Reconnects() == 2 })
	eventually(t, "the cut connection's listens to go", onlyNew)
	emit("a.4", "back", 1)
	if sig := recvSignal(t, s); sig.Payload != "back" {
		t.Fatalf("first signal after the outage %+v; want a.4 (a.3 was emitted while away)", sig)
	}
}

// TestSignalReconnectWindow: reconnecting gives up after the window; the
// SignalConn then ends as without WithReconnect, and Err says why.
func TestSignalReconnectWindow(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	s, err := NewSignalConn(ctx, ps.via, Options{}, WithReconnect(300*time.Millisecond), WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Listen(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	select {
	case _, ok := <-s.Signals():
		if ok {
			t.Fatal("signal during an outage")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Signals not closed 10s into an outage with a 300ms window")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "not reconnected within") {
		t.Fatalf("Err = %v; want the window's error", err)
	}
	if s.Reconnects() != 0 {
		t.Fatalf("Reconnects = %d", s.Reconnects())
	}
}

// fencedResource stands for a resource guarded by one lock key: at most
// one client inside at a time, and each entry with a greater fence than
// every earlier one (a fenced store would reject the others).
type fencedResource struct {
	mu         sync.Mutex
	inside     string
	maxFence   uint64
	violations []string
}

func (r *fencedResource) enter(who, token string) {
	fence, err := FenceFromToken(token)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.violations = append(r.violations, fmt.Sprintf("%s entered with token %q: %v", who, token, err))
	case r.inside != "":
		r.violations = append(r.violations, fmt.Sprintf("%s entered (fence %d) while %s is inside", who, fence, r.inside))
	case fence <= r.maxFence:
		r.violations = append(r.violations, fmt.Sprintf("%s entered with stale fence %d (max %d)", who, fence, r.maxFence))
	}
	r.inside, r.maxFence = who, max(r.maxFence, fence)
}

func (r *fencedResource) exit(who string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inside == who {
		r.inside = ""
	}
}

func (r *fencedResource) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error(v)
	}
}

// leaseHolder is what the tests need of Lock and Semaphore.
type leaseHolder interface {
	Acquire(ctx context.Context) (bool, error)
	Release(ctx context.Context) error
	Close() error
	Token() string
	Lost() <-chan struct{}
}

// contend acquires h in a goroutine and enters res when granted; the
// returned channel receives Acquire's result.
func contend(ctx context.Context, h leaseHolder, who string, res *fencedResource) <-chan error {
	done := make(chan error, 1)
	go func() {
		ok, err := h.Acquire(ctx)
		if err == nil && !ok {
			err = errors.New(who + ": Acquire timed out")
		}
		if err == nil {
			res.enter(who, h.Token())
		}
		done <- err
	}()
	return done
}

// waitDone waits up to 10s for an Acquire started by contend.
func waitDone(t testing.TB, who string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not granted within 10s", who)
	}
}

// notDone fails if an Acquire started by contend has returned.
func notDone(t testing.TB, who string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s: Acquire returned (%v) while the lock should be held elsewhere", who, err)
	default:
	}
}

// inspectKey returns the inspect answer for key in the namespace of kind.
func inspectKey(t testing.TB, c *Conn, key string, sem bool) *KeyInfo {
	t.Helper()
	ki, err := c.Inspect(ctxT(t), key, sem)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return ki
}

// TestLockSessionHolderCut: the connection of a holder is cut three
// times; each time it reconnects through the proxy and resumes its session,
// keeping the same lease (same fence) and renewing it past several lease
// periods, while a contender waits: no one else ever enters. Release
// after the cuts releases, the contender gets the lock, and no session
// lingers. Both for a lock and a semaphore.
func TestLockSessionHolderCut(t *testing.T) {
	for _, sem := range []bool{false, true} {
		t.Run(map[bool]string{false: "lock", true: "semaphore"}[sem], func(t *testing.T) {
			t.Parallel()
			ps := startProxied(t, serverConfig{})
			ctx := ctxT(t)
			var lostErr atomic.Pointer[error]
			onErr := func(err error) { lostErr.Store(&err) }
			mk := func(servers []string, name string) leaseHolder {
				if sem {
					return &Semaphore{Key: "k", Limit: 1, Servers: servers, LeaseTTL: 1, AcquireTimeout: 30 * time.Second,
						SessionTTL: 10 * time.Second, Name: name, OnRenewError: onErr}
				}
				return &Lock{Key: "k", Servers: servers, LeaseTTL: 1, AcquireTimeout: 30 * time.Second,
					SessionTTL: 10 * time.Second, Name: name, OnRenewError: onErr}
			}
			holder := mk([]string{ps.via}, "holder")
			contender := mk([]string{ps.Addr}, "contender") // direct: never cut
			defer holder.Close()
			defer contender.Close()
			obs := ps.dial(t)
			var res fencedResource
			defer res.check(t)

			if ok, err := holder.Acquire(ctx); !ok || err != nil {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			tok := holder.Token()
			fence, _ := FenceFromToken(tok)
			res.enter("holder", tok)
			done := contend(ctx, contender, "contender", &res)
			eventually(t, "the contender to queue", func() bool { return len(inspectKey(t, obs, "k", sem).Waiters) == 1 })

			for i := range 3 {
				if n := ps.proxy.CutAll(); n != 1 {
					t.Fatalf("cut %d: %d connections cut; want the holder's", i, n)
				}
				eventually(t, "the holder to reconnect", func() bool { return len(ps.proxy.Conns()) == 1 })
				time.Sleep(300 * time.Millisecond) // let a renewal or two go through the new connection
			}
			// Renewals go on: well past the 1s lease, the same slot is held.
			until := time.Now().Add(2500 * time.Millisecond)
			for time.Now().Before(until) {
				ki := inspectKey(t, obs, "k", sem)
				if len(ki.Holders) != 1 || ki.Holders[0].Fence != fence || ki.Holders[0].Name != "holder" {
					t.Fatalf("holders %+v; want the holder's fence %d", ki.Holders, fence)
				}
				notDone(t, "contender", done)
				time.Sleep(50 * time.Millisecond)
			}
			if holder.Token() != tok {
				t.Fatalf("Token = %q; want %q", holder.Token(), tok)
			}
			select {
			case <-holder.Lost():
				t.Fatalf("Lost fired: %v", *lostErr.Load())
			default:
			}
			res.exit("holder")
			if err := holder.Release(ctx); err != nil {
				t.Fatalf("Release after reconnecting: %v", err)
			}
			waitDone(t, "contender", done)
			res.exit("contender")
			if err := contender.Release(ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, "no session to linger", func() bool {
				st, err := obs.Stats(ctx)
				return err == nil && st.Sessions == 0 && st.DetachedSessions == 0
			})
		})
	}
}

// TestLockSessionWaiterCut: a waiter whose connection is cut while it
// waits keeps its place in the queue, ahead of a later waiter; cut again
// and kept away while the lock is released, its place is granted while it
// is away, and on its return it collects the grant: the later waiter is
// served only after it.
func TestLockSessionWaiterCut(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	first := ps.dial(t)
	obs := ps.dial(t)
	var res fencedResource
	defer res.check(t)
	tok, _, err := first.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	res.enter("first", tok)
	b := &Lock{Key: "k", Servers: []string{ps.via}, AcquireTimeout: 30 * time.Second, LeaseTTL: 5, SessionTTL: 10 * time.Second, Name: "b"}
	c := &Lock{Key: "k", Servers: []string{ps.Addr}, AcquireTimeout: 30 * time.Second, Name: "c"}
	defer b.Close()
	defer c.Close()
	bDone := contend(ctx, b, "b", &res)
	eventually(t, "b to queue", func() bool { return len(inspectKey(t, obs, "k", false).Waiters) == 1 })
	cDone := contend(ctx, c, "c", &res)
	order := func() []string {
		var names []string
		for _, w := range inspectKey(t, obs, "k", false).Waiters {
			names = append(names, w.Name)
		}
		return names
	}
	eventually(t, "c to queue", func() bool { return len(order()) == 2 })

	if n := ps.proxy.CutAll(); n != 1 {
		t.Fatalf("%d connections cut; want b's", n)
	}
	eventually(t, "b to reconnect and wait again", func() bool {
		ki := inspectKey(t, obs, "k", false)
		return len(ps.proxy.Conns()) == 1 && len(ki.Waiters) == 2 && !ki.Waiters[0].Detached
	})
	if got := order(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("queue %q after b's cut; want b still first", got)
	}

	// Away while the lock is released: b's place is granted in its absence.
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	eventually(t, "b's session to be detached", func() bool {
		ki := inspectKey(t, obs, "k", false)
		return len(ki.Waiters) == 2 && ki.Waiters[0].Detached
	})
	res.exit("first")
	if err := first.Release(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the grant to b's detached place", func() bool {
		ki := inspectKey(t, obs, "k", false)
		return len(ki.Holders) == 1 && ki.Holders[0].Detached && len(ki.Waiters) == 1
	})
	notDone(t, "b", bDone)
	notDone(t, "c", cDone)
	ps.proxy.Refuse(false)
	waitDone(t, "b", bDone)
	notDone(t, "c", cDone)
	res.exit("b")
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, "c", cDone)
	res.exit("c")
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockSessionLost: when the holder cannot reconnect for longer than
// the session TTL (1s here), Lost fires and OnRenewError gets an error
// wrapping ErrSessionGone — before the server, expiring the session,
// hands the lock to the next waiter.
func TestLockSessionLost(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{server: server.Options{SessionTTL: time.Second}})
	ctx := ctxT(t)
	var res fencedResource
	defer res.check(t)
	lostErr := make(chan error, 1)
	holder := &Lock{Key: "k", Servers: []string{ps.via}, LeaseTTL: 30, OnRenewError: func(err error) { lostErr <- err }}
	contender := &Lock{Key: "k", Servers: []string{ps.Addr}, AcquireTimeout: 30 * time.Second}
	defer holder.Close()
	defer contender.Close()
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	res.enter("holder", holder.Token())
	lost := holder.Lost()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-lost:
			res.exit("holder") // stop working at once
		case <-ctx.Done():
		}
	}()
	obs := ps.dial(t)
	done := contend(ctx, contender, "contender", &res)
	eventually(t, "the contender to queue", func() bool { return len(inspectKey(t, obs, "k", false).Waiters) == 1 })

	start := time.Now()
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	select {
	case err := <-lostErr:
		if !errors.Is(err, ErrSessionGone) {
			t.Fatalf("OnRenewError(%v); want ErrSessionGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not fire 10s into an outage, with a session TTL of 1s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Lost fired %v after the cut; want about the session TTL (1s)", d)
	}
	<-watched
	if holder.Token() != "" {
		t.Fatalf("Token = %q after Lost", holder.Token())
	}
	waitDone(t, "contender", done) // the server expired the session
	if ps.proxy.Refused() == 0 {
		t.Fatal("the holder never tried to reconnect")
	}
	ps.proxy.Refuse(false)
	if err := holder.Release(ctx); err != nil {
		t.Fatalf("Release after Lost: %v", err)
	}
	res.exit("contender")
	if err := contender.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockNoSessionCut: with NoSession, a Lock is tied to its connection
// as with dflockd 1.x: a cut loses the lock at once and Lost fires at the
// next renewal.
func TestLockNoSessionCut(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	lostErr := make(chan error, 1)
	holder := &Lock{Key: "k", Servers: []string{ps.via}, LeaseTTL: 1, NoSession: true, OnRenewError: func(err error) { lostErr <- err }}
	defer holder.Close()
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	obs := ps.dial(t)
	if st, err := obs.Stats(ctx); err != nil || st.Sessions != 0 {
		t.Fatalf("stats %+v, %v; want no named session", st, err)
	}
	ps.proxy.CutAll()
	eventually(t, "the server to release the lock", func() bool { return !held(t, obs, "k") })
	select {
	case <-lostErr:
	case <-time.After(5 * time.Second):
		t.Fatal("Lost did not fire after a cut without a session")
	}
	if ps.proxy.Refused() != 0 || len(ps.proxy.Conns()) != 0 {
		t.Fatal("a Lock without a session reconnected")
	}
}

// TestLockSessionCancelAndClose: a cancelled Acquire and a Close end the
// session at once (they reconnect to say bye when they must), so nothing
// lingers for the session TTL: no detached place, no held lock.
func TestLockSessionCancelAndClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	obs := ts.dial(t)
	holder := &Lock{Key: "k", Servers: []string{ts.Addr}}
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	waiter := &Lock{Key: "k", Servers: []string{ts.Addr}, AcquireTimeout: 30 * time.Second}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := waiter.Acquire(wctx); done <- err }()
	eventually(t, "the waiter to queue", func() bool { return len(inspectKey(t, obs, "k", false).Waiters) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire = %v", err)
	}
	// The cancelled wait must not stay as a detached place. The server
	// answers bye before it releases: allow it a moment, far below the
	// session TTL of 15s.
	soon(t, "the cancelled wait to leave the queue", func() bool {
		st, err := obs.Stats(ctx)
		return err == nil && st.Sessions == 1 && st.DetachedSessions == 0 && len(inspectKey(t, obs, "k", false).Waiters) == 0
	})
	if err := holder.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	soon(t, "Close to release the lock and end the session", func() bool {
		st, err := obs.Stats(ctx)
		return err == nil && st.Sessions == 0 && st.DetachedSessions == 0 && !held(t, obs, "k")
	})
}

// soon polls cond for up to 2s: for what must happen promptly, well within
// a session TTL.
func soon(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLockSessionTakenOver: when the session is ended elsewhere (taken
// over with its secret and ended with bye), the holder's connection is
// closed by the take-over, its resume is refused, and Lost fires at once
// with ErrSessionGone.
func TestLockSessionTakenOver(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	lostErr := make(chan error, 1)
	holder := &Lock{Key: "k", Servers: []string{ts.Addr}, LeaseTTL: 30, OnRenewError: func(err error) { lostErr <- err }}
	defer holder.Close()
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	holder.h.mu.Lock()
	sess := *holder.h.sess
	holder.h.mu.Unlock()
	thief := ts.dial(t)
	if h, q, err := thief.Resume(ctx, sess.ID, sess.Secret); err != nil || h != 1 || q != 0 {
		t.Fatalf("Resume = %d, %d, %v", h, q, err)
	}
	if err := thief.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-lostErr:
		if !errors.Is(err, ErrSessionGone) {
			t.Fatalf("OnRenewError(%v); want ErrSessionGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not fire after the session was ended elsewhere")
	}
	// The renewal runs every third of the 15s session TTL at most.
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("Lost fired %v after the session ended", d)
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatalf("Release after Lost: %v", err)
	}
}

// TestLockSessionPlaceExpiredAway: a waiter away while its place is
// granted, and longer than that grant's lease, has lost the place; on its
// return Acquire asks again and gets the lock when it is free.
func TestLockSessionPlaceExpiredAway(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	first := ps.dial(t)
	obs := ps.dial(t)
	tok, _, err := first.Acquire(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	b := &Lock{Key: "k", Servers: []string{ps.via}, AcquireTimeout: 30 * time.Second, LeaseTTL: 1, SessionTTL: 20 * time.Second}
	defer b.Close()
	var res fencedResource
	bDone := contend(ctx, b, "b", &res)
	eventually(t, "b to queue", func() bool { return len(inspectKey(t, obs, "k", false).Waiters) == 1 })
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	eventually(t, "b's session to be detached", func() bool {
		ki := inspectKey(t, obs, "k", false)
		return len(ki.Waiters) == 1 && ki.Waiters[0].Detached
	})
	if err := first.Release(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the grant to b's detached place to expire", func() bool {
		ki := inspectKey(t, obs, "k", false)
		return len(ki.Holders) == 0 && len(ki.Waiters) == 0
	})
	ps.proxy.Refuse(false)
	waitDone(t, "b", bDone)
	if ki := inspectKey(t, obs, "k", false); len(ki.Holders) != 1 || ki.Holders[0].Detached {
		t.Fatalf("holders %+v; want b, attached", ki.Holders)
	}
	res.exit("b")
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockSessionCloseWhileAway: Close while the renewal is trying to
// reconnect returns promptly (within its two-second bound) and stops the
// reconnection.
func TestLockSessionCloseWhileAway(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	holder := &Lock{Key: "k", Servers: []string{ps.via}, LeaseTTL: 1, SessionTTL: 20 * time.Second}
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	eventually(t, "the holder to try to reconnect", func() bool { return ps.proxy.Refused() >= 1 })
	start := time.Now()
	if err := holder.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	refused := ps.proxy.Refused()
	time.Sleep(300 * time.Millisecond)
	if ps.proxy.Refused() != refused {
		t.Fatal("the holder went on reconnecting after Close")
	}
	select {
	case <-holder.Lost():
		t.Fatal("Close fired Lost")
	default:
	}
}

// TestLockSessionCutWithAuth: with auth on, the reconnection
// authenticates with the same token before it resumes (the server lets
// only the identity that named a session resume it).
func TestLockSessionCutWithAuth(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{server: server.Options{Auth: auth.Token("s3cret")}})
	ctx := ctxT(t)
	holder := &Lock{Key: "k", Servers: []string{ps.via}, AuthToken: "s3cret", LeaseTTL: 1}
	defer holder.Close()
	if ok, err := holder.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	tok := holder.Token()
	ps.proxy.CutAll()
	eventually(t, "the holder to reconnect", func() bool { return len(ps.proxy.Conns()) == 1 })
	time.Sleep(1500 * time.Millisecond) // past the 1s lease: renewed on the new connection
	select {
	case <-holder.Lost():
		t.Fatal("Lost fired after a cut with auth")
	default:
	}
	if holder.Token() != tok {
		t.Fatalf("Token = %q; want %q", holder.Token(), tok)
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
