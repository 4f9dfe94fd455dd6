package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

const lk = core.KindLock

func bg() context.Context { return context.Background() }

// result of a Lock run in the background.
type lockResult struct {
	l   core.Lease
	err error
}

func lockAsync(ctx context.Context, c *Conn, key string, timeout time.Duration) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		l, err := c.Lock(ctx, lk, key, 1, 0, timeout)
		ch <- lockResult{l, err}
	}()
	return ch
}

func recvLock(t testing.TB, ch <-chan lockResult) lockResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no answer")
		return lockResult{}
	}
}

func queueLen(r *Replica, key string) int {
	ki, ok := r.State().Inspect(lk, key)
	if !ok {
		return 0
	}
	return len(ki.Queue)
}

func TestConnLockTryBlockAndHandOff(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a, b := leader.Connect("", nil), leader.Connect("", nil)
	la, err := a.Lock(bg(), lk, "k", 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(bg(), lk, "k", 1, 0, 0); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("try on a held lock = %v", err)
	}
	ch := lockAsync(bg(), b, "k", 10*time.Second)
	eventually(t, "b queued", func() bool { return queueLen(leader, "k") == 1 })
	if err := a.Release(bg(), lk, "k", la.Token); err != nil {
		t.Fatal(err)
	}
	got := recvLock(t, ch)
	if got.err != nil || got.l.Token.String() <= la.Token.String() {
		t.Fatalf("b's lock = %v, %v; want a later token than %s", got.l.Token, got.err, la.Token)
	}
}

func TestConnLockTimeoutLeavesTheQueue(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a, b := leader.Connect("", nil), leader.Connect("", nil)
	if _, err := a.Lock(bg(), lk, "k", 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(bg(), lk, "k", 1, 0, time.Second); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("blocked lock = %v; want timeout", err)
	}
	if n := queueLen(leader, "k"); n != 0 {
		t.Fatalf("queue after the timeout = %d", n)
	}
}

// An unnamed connection that goes away releases what it held and drops
// its places, as in single-node mode.
func TestConnCloseReleasesAnImplicitSession(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a, b := leader.Connect("", nil), leader.Connect("", nil)
	if _, err := a.Lock(bg(), lk, "k", 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	ch := lockAsync(bg(), b, "k", 10*time.Second)
	eventually(t, "b queued", func() bool { return queueLen(leader, "k") == 1 })
	a.Close(bg())
	if got := recvLock(t, ch); got.err != nil {
		t.Fatal(got.err)
	}
}

// A named session's blocked lock keeps its place when the connection
// drops; granted while detached, it is collected with Wait after Resume.
func TestConnNamedSessionParksAndResumes(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	holder, b, c := leader.Connect("", nil), leader.Connect("alice", nil), leader.Connect("", nil)
	lh, err := holder.Lock(bg(), lk, "k", 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, err := b.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg())
	ch := lockAsync(ctx, b, "k", time.Minute)
	eventually(t, "b queued", func() bool { return queueLen(leader, "k") == 1 })
	chC := lockAsync(bg(), c, "k", 10*time.Second)
	eventually(t, "c queued", func() bool { return queueLen(leader, "k") == 2 })
	cancel() // b's connection drops
	if got := recvLock(t, ch); !errors.Is(got.err, core.ErrParked) {
		t.Fatalf("b's lock after the drop = %v; want parked", got.err)
	}
	b.Close(bg())
	if err := holder.Release(bg(), lk, "k", lh.Token); err != nil {
		t.Fatal(err)
	}
	b2 := leader.Connect("alice", nil)
	if _, _, err := b2.Resume(bg(), id, Secret{1}); !errors.Is(err, core.ErrSession) {
		t.Fatalf("resume with a wrong secret = %v", err)
	}
	if _, _, err := leader.Connect("bob", nil).Resume(bg(), id, secret); !errors.Is(err, core.ErrSession) {
		t.Fatalf("resume as another identity = %v", err)
	}
	held, queued, err := b2.Resume(bg(), id, secret)
	if err != nil || held != 1 || queued != 0 {
		t.Fatalf("resume = %d held, %d queued, %v; want 1, 0", held, queued, err)
	}
	l, err := b2.Wait(bg(), lk, "k", 0)
	if err != nil {
		t.Fatalf("w after resume = %v", err)
	}
	select {
	case r := <-chC:
		t.Fatalf("c got the lock before b released it: %+v", r)
	default:
	}
	if err := b2.Release(bg(), lk, "k", l.Token); err != nil {
		t.Fatal(err)
	}
	if got := recvLock(t, chC); got.err != nil {
		t.Fatal(got.err)
	}
}

func TestConnEnqueueAndWait(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a, b := leader.Connect("", nil), leader.Connect("", nil)
	la, acquired, err := a.Enqueue(bg(), lk, "k", 1, 0)
	if err != nil || !acquired {
		t.Fatalf("enqueue = %v, %v", acquired, err)
	}
	if _, _, err := a.Enqueue(bg(), lk, "k", 1, 0); !errors.Is(err, core.ErrAlreadyEnqueued) {
		t.Fatalf("second enqueue = %v", err)
	}
	if _, err := a.Wait(bg(), lk, "k", 0); err != nil {
		t.Fatalf("w after acquired = %v", err)
	}
	if _, acquired, err := b.Enqueue(bg(), lk, "k", 1, 0); err != nil || acquired {
		t.Fatalf("b enqueue = %v, %v; want queued", acquired, err)
	}
	done := make(chan lockResult, 1)
	go func() {
		l, err := b.Wait(bg(), lk, "k", 10*time.Second)
		done <- lockResult{l, err}
	}()
	time.Sleep(50 * time.Millisecond) // let the wait block (it would find the grant otherwise: fine too)
	if err := a.Release(bg(), lk, "k", la.Token); err != nil {
		t.Fatal(err)
	}
	if got := recvLock(t, done); got.err != nil {
		t.Fatalf("b's wait = %v", got.err)
	}
	if _, err := b.Wait(bg(), lk, "k", 0); !errors.Is(err, core.ErrNotEnqueued) {
		t.Fatalf("w without a record = %v", err)
	}
}

// A named session outlives the leader: on the new leader a new connection
// resumes it, and its lock is still held, renewable, with its token.
func TestConnResumeAfterFailover(t *testing.T) {
	tr := newTestReplicas(t, 3, 500*time.Millisecond)
	leader, li := tr.leader()
	a := leader.Connect("", nil)
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.Lock(bg(), lk, "k", 1, 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr.stop(li)
	next, _ := tr.leader()
	a2 := next.Connect("", nil)
	held, _, err := a2.Resume(bg(), id, secret)
	if err != nil || held != 1 {
		t.Fatalf("resume on the new leader = %d held, %v", held, err)
	}
	if _, err := a2.Renew(bg(), lk, "k", la.Token, 30*time.Second); err != nil {
		t.Fatalf("renew on the new leader = %v", err)
	}
	// An unnamed newcomer cannot take it.
	if _, err := next.Connect("", nil).Lock(bg(), lk, "k", 1, 0, 0); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("another client's try = %v; want timeout", err)
	}
}

// Resuming a session still attached to a connection closes that one.
func TestConnResumeTakesOver(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	closed := make(chan struct{})
	a := leader.Connect("", func() { close(closed) })
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lock(bg(), lk, "k", 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	b := leader.Connect("", nil)
	if held, _, err := b.Resume(bg(), id, secret); err != nil || held != 1 {
		t.Fatalf("take-over resume = %d, %v", held, err)
	}
	select {
	case <-closed:
	default:
		t.Fatal("the old connection was not closed")
	}
	a.Close(bg()) // its end must not detach the session from b
	if _, err := b.Lock(bg(), lk, "k2", 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Bye(bg()); err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.State().Session(id); ok {
		t.Fatal("bye left the session")
	}
}

// A node that does not serve as leader answers resume and wait "not the
// leader", never from its own state, which may be behind: a restarted
// node applies its log only once a leader commits, and a session it does
// not know yet must not be refused as unknown (the client would drop a
// session that holds locks), nor a place it has not seen answered as
// not enqueued.
func TestConnNonLeaderRefusesResumeAndWait(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a := leader.Connect("", nil)
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lock(bg(), lk, "k", 1, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if _, acquired, err := a.Enqueue(bg(), lk, "e", 1, 30*time.Second); err != nil || !acquired {
		t.Fatalf("enqueue = %v, %v", acquired, err)
	}
	for i := range tr.nodes {
		tr.stop(i)
	}
	tr.start(0) // alone: no leader, nothing of the log applied yet
	if _, _, err := tr.nodes[0].Connect("", nil).Resume(bg(), id, secret); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("resume on a lone restarted node = %v; want %v", err, ErrNotLeader)
	}
	b := tr.nodes[0].Connect("", nil)
	b.sid, b.named = id, true // as after a resume on the leader that lost leadership since
	if _, err := b.Wait(bg(), lk, "e", 0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("wait on a lone restarted node = %v; want %v", err, ErrNotLeader)
	}
}

// A blocked l/sl of a named session whose connection a failover cut must
// be kept as a two-phase place, as a dropped connection's is (and as
// single-node mode keeps it): the resumed client collects it with w.
// (It was kept as a single-phase place that nobody waited for: resume
// counted it, w answered not enqueued, and once granted it held the key,
// under a token nobody knew, until its lease ended.)
func TestConnFailoverParksABlockedLock(t *testing.T) {

	tr := newTestReplicas(t, 3, 500*time.Millisecond)
	leader, li := tr.leader()
	a := leader.Connect("", nil)
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b := leader.Connect("", nil)
	lb, err := b.Lock(bg(), lk, "k", 1, 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := lockAsync(bg(), a, "k", 30*time.Second)
	eventually(t, "a queued", func() bool { return queueLen(leader, "k") == 1 })
	tr.stop(li)
	if r := recvLock(t, ch); r.err == nil {
		t.Fatalf("the blocked lock on the stopped leader answered %v", r.l)
	}
	next, _ := tr.leader()
	a2 := next.Connect("", nil)
	if held, queued, err := a2.Resume(bg(), id, secret); err != nil || held != 0 || queued != 1 {
		t.Fatalf("resume = %d held, %d queued, %v; want 0, 1", held, queued, err)
	}
	// b's implicit session ends a grace after the failover, or its
	// release frees the key.
	if err := next.Connect("", nil).Release(bg(), lk, "k", lb.Token); err != nil {
		t.Fatal(err)
	}
	l, err := a2.Wait(bg(), lk, "k", 10*time.Second)
	if err != nil {
		t.Fatalf("w after the failover = %v; want the parked place's grant", err)
	}
	if err := a2.Release(bg(), lk, "k", l.Token); err != nil {
		t.Fatal(err)
	}
}

// A resume that takes over a connection blocked in l/sl answers once that
// request is kept as a two-phase place, so that the client's w finds it
// at once. (The take-over closed the old connection and answered at
// once, while the old request was parked a moment later: a w right after
// the resume answered not enqueued.)
func TestConnResumeTakeOverParksFirst(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	a := leader.Connect("", cancel) // the take-over closes a: its request's context ends
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Connect("", nil).Lock(bg(), lk, "k", 1, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	ch := lockAsync(ctx, a, "k", 30*time.Second)
	eventually(t, "a queued", func() bool { return queueLen(leader, "k") == 1 })
	c := leader.Connect("", nil)
	if held, queued, err := c.Resume(bg(), id, secret); err != nil || held != 0 || queued != 1 {
		t.Fatalf("resume = %d held, %d queued, %v; want 0, 1", held, queued, err)
	}
	if _, err := c.Wait(bg(), lk, "k", 0); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("w right after the take-over = %v; want %v (the place, still queued)", err, core.ErrTimeout)
	}
	if r := recvLock(t, ch); r.err == nil {
		t.Fatalf("the taken-over lock answered %v", r.l)
	}
}

// A blocking l/sl whose connection ends while its queue place is being
// proposed still resolves the place: a named session keeps it as a
// two-phase place that w collects. (The proposal's wait ended with the
// connection and the place, committed anyway, stayed single-phase,
// waited for by nobody.)
func TestConnLockCutWhileProposedIsParked(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, _ := tr.leader()
	a := leader.Connect("", nil)
	id, secret, err := a.Name(bg(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Connect("", nil).Lock(bg(), lk, "k", 1, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(bg())
	cancel() // the connection is gone by the time the place is proposed
	if _, err := a.Lock(gone, lk, "k", 1, 30*time.Second, 30*time.Second); err == nil {
		t.Fatal("a lock on a gone connection answered")
	}
	a.Close(bg())
	// The proposal was handed to raft before its wait ended.
	eventually(t, "the place committed", func() bool { return queueLen(leader, "k") == 1 })
	c := leader.Connect("", nil)
	if held, queued, err := c.Resume(bg(), id, secret); err != nil || held != 0 || queued != 1 {
		t.Fatalf("resume = %d held, %d queued, %v; want 0, 1", held, queued, err)
	}
	if _, err := c.Wait(bg(), lk, "k", 0); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("w after the resume = %v; want %v (the place, kept two-phase)", err, core.ErrTimeout)
	}
}
