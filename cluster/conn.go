package cluster

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Conn is one client connection's view of the replicated lock state, on
// the leader: the protocol's lock, semaphore and session requests as
// proposals. A connection that takes anything gets an implicit session
// (what the connection owns, as in single-node mode); `session` names it
// so that it outlives the connection for its TTL. A Conn is used by one
// goroutine at a time, its connection's.
type Conn struct {
	r        *Replica
	identity string
	sid      SessionID // zero until the connection needs a session
	secret   Secret
	named    bool
	ttl      time.Duration
	takeover func() // closes this connection when another takes its session

	mu   sync.Mutex
	busy chan struct{} // closed when the blocking request in progress ends
}

// block marks a blocking request in progress; the caller closes the
// returned channel when it ends.
func (c *Conn) block() chan struct{} {
	ch := make(chan struct{})
	c.mu.Lock()
	c.busy = ch
	c.mu.Unlock()
	return ch
}

// settle waits (bounded) for the blocking request in progress, if any,
// to end: parked or answered.
func (c *Conn) settle(ctx context.Context) {
	c.mu.Lock()
	ch := c.busy
	c.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(applyTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
	}
}

// Connect returns the handle of a new client connection authenticated as
// identity. takeover, when set, closes the connection; it is called when
// a `resume` elsewhere takes over this connection's session.
func (r *Replica) Connect(identity string, takeover func()) *Conn {
	return &Conn{r: r, identity: identity, takeover: takeover}
}

// SetIdentity records the identity the connection authenticated as (a
// session is resumed only by the identity that named it).
func (c *Conn) SetIdentity(identity string) { c.identity = identity }

// ErrSessionBusy: the connection already has a session of its own, or
// holds or waits on something, so it cannot resume another.
var ErrSessionBusy = errors.New("cluster: the connection already has a session")

func newIDs() (SessionID, Secret) {
	var id SessionID
	var sec Secret
	for id == (SessionID{}) {
		if _, err := rand.Read(id[:]); err != nil {
			panic("cluster: crypto/rand: " + err.Error())
		}
	}
	if _, err := rand.Read(sec[:]); err != nil {
		panic("cluster: crypto/rand: " + err.Error())
	}
	return id, sec
}

// session returns the connection's session, opening an implicit one the
// first time.
func (c *Conn) session(ctx context.Context) (SessionID, error) {
	if c.sid != (SessionID{}) {
		return c.sid, nil
	}
	id, sec := newIDs()
	res, err := c.r.Propose(ctx, &OpenSession{ID: id, Secret: sec, Identity: c.identity})
	if err != nil {
		return SessionID{}, err
	}
	if res.Status != OK {
		return SessionID{}, res.Err()
	}
	c.sid, c.secret = id, sec
	c.r.attach(id, c)
	return id, nil
}

// leaseOf turns a granted result into a core.Lease.
func leaseOf(key string, res Result) core.Lease {
	return core.Lease{Key: key, Token: res.Token, TTL: res.TTL, Expires: time.Now().Add(res.TTL)}
}

func grantLease(key string, g Grant) core.Lease {
	return core.Lease{Key: key, Token: g.Token, TTL: g.TTL, Expires: time.Now().Add(g.TTL)}
}

// Lock is `l`/`sl`: a slot of key, waiting up to timeout (0: try once).
// When ctx ends while it waits (the connection dropped), a named
// session's place is kept as a two-phase place (core.ErrParked joined to
// core.ErrCanceled) and an implicit session's is given up.
func (c *Conn) Lock(ctx context.Context, kind core.Kind, key string, limit int, ttl, timeout time.Duration) (core.Lease, error) {
	sid, err := c.session(ctx)
	if err != nil {
		return core.Lease{}, err
	}
	if timeout <= 0 {
		res, err := c.r.Propose(ctx, &Acquire{Session: sid, Kind: kind, Key: key, Limit: limit, TTL: ttl, Mode: Try, Place: placeID()})
		if err != nil {
			return core.Lease{}, err
		}
		if res.Status != Granted {
			return core.Lease{}, res.Err()
		}
		return leaseOf(key, res), nil
	}
	// From here until it ends the request is one a take-over waits for
	// (Resume): its place is proposed, then parked if the connection
	// ends.
	defer close(c.block())
	place, ch := c.r.NewPlace()
	// The proposal's result is awaited even if the connection ends
	// meanwhile: a place committed without it would be waited for by
	// nobody (await then parks or cancels it).
	res, err := c.r.Propose(context.WithoutCancel(ctx), &Acquire{Session: sid, Kind: kind, Key: key, Limit: limit, TTL: ttl, Mode: Queue, Place: place})
	if err != nil || res.Status != Queued {
		c.r.Forget(place)
		if err != nil {
			return core.Lease{}, err
		}
		if res.Status != Granted {
			return core.Lease{}, res.Err()
		}
		return leaseOf(key, res), nil
	}
	return c.await(ctx, kind, key, place, ch, timeout, false)
}

// await waits for place's grant, its timeout, the end of ctx or of the
// leadership. collect: the place is two-phase (a `w`), so its grant is
// collected.
func (c *Conn) await(ctx context.Context, kind core.Kind, key string, place uint64, ch <-chan Grant, timeout time.Duration, collect bool) (core.Lease, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case g, ok := <-ch:
		if !ok {
			return core.Lease{}, ErrNotLeader
		}
		if collect {
			return c.collect(ctx, kind, key)
		}
		return grantLease(key, g), nil
	case <-timer.C:
		c.r.Forget(place)
		// Leave the queue, keeping a grant that raced in.
		res, err := c.r.Propose(context.Background(), &Cancel{Kind: kind, Key: key, Place: place, KeepGrant: true})
		if err != nil {
			return core.Lease{}, err
		}
		if res.Status == Granted {
			return leaseOf(key, res), nil
		}
		return core.Lease{}, core.ErrTimeout
	case <-ctx.Done():
		c.r.Forget(place)
		if c.named {
			res, err := c.r.Propose(context.Background(), &Park{Kind: kind, Key: key, Place: place})
			if err == nil && (res.Status == Queued || res.Status == Granted) {
				return core.Lease{}, fmt.Errorf("%w (%w): %w", core.ErrCanceled, core.ErrParked, ctx.Err())
			}
			return core.Lease{}, fmt.Errorf("%w: %w", core.ErrCanceled, ctx.Err())
		}
		_, _ = c.r.Propose(context.Background(), &Cancel{Kind: kind, Key: key, Place: place})
		return core.Lease{}, fmt.Errorf("%w: %w", core.ErrCanceled, ctx.Err())
	}
}

// Enqueue is `e`/`se`: a slot at once (acquired) or a two-phase place.
func (c *Conn) Enqueue(ctx context.Context, kind core.Kind, key string, limit int, ttl time.Duration) (core.Lease, bool, error) {
	sid, err := c.session(ctx)
	if err != nil {
		return core.Lease{}, false, err
	}
	res, err := c.r.Propose(ctx, &Acquire{Session: sid, Kind: kind, Key: key, Limit: limit, TTL: ttl, Mode: Enqueue, Place: placeID()})
	if err != nil {
		return core.Lease{}, false, err
	}
	switch res.Status {
	case Granted:
		return leaseOf(key, res), true, nil
	case Queued:
		return core.Lease{}, false, nil
	}
	return core.Lease{}, false, res.Err()
}

// Wait is `w`/`sw`: collects the connection's two-phase record for key,
// waiting up to timeout for a queued one (0: look once).
func (c *Conn) Wait(ctx context.Context, kind core.Kind, key string, timeout time.Duration) (core.Lease, error) {
	if c.sid == (SessionID{}) {
		return core.Lease{}, core.ErrNotEnqueued
	}
	if !c.r.Leading() {
		return core.Lease{}, ErrNotLeader // the state may be behind
	}
	defer close(c.block()) // a take-over waits for it (Resume)
	p, h, ok := c.r.st.Record(c.sid, kind, key)
	switch {
	case !ok:
		return core.Lease{}, core.ErrNotEnqueued
	case h != nil:
		return c.collect(ctx, kind, key)
	}
	ch := c.r.Watch(p.Place)
	// The grant may have come between the look and the watch.
	if _, h, _ := c.r.st.Record(c.sid, kind, key); h != nil {
		c.r.Forget(p.Place)
		return c.collect(ctx, kind, key)
	}
	if timeout <= 0 {
		c.r.Forget(p.Place)
		res, err := c.r.Propose(ctx, &Cancel{Kind: kind, Key: key, Place: p.Place, KeepGrant: true})
		if err != nil {
			return core.Lease{}, err
		}
		if res.Status == Granted {
			return leaseOf(key, res), nil
		}
		return core.Lease{}, core.ErrTimeout
	}
	return c.await(ctx, kind, key, p.Place, ch, timeout, true)
}

// collect makes a pending two-phase grant the session's own; its lease
// restarts now, as in single-node mode.
func (c *Conn) collect(ctx context.Context, kind core.Kind, key string) (core.Lease, error) {
	res, err := c.r.Propose(ctx, &Collect{Session: c.sid, Kind: kind, Key: key})
	if err != nil {
		return core.Lease{}, err
	}
	if res.Status != Granted {
		return core.Lease{}, res.Err()
	}
	c.r.restartLease(res.Token, res.TTL)
	return leaseOf(key, res), nil
}

// Release is `r`/`sr`: any connection may release any token.
func (c *Conn) Release(ctx context.Context, kind core.Kind, key string, tok core.Token) error {
	res, err := c.r.Propose(ctx, &Release{Kind: kind, Key: key, Token: tok})
	if err != nil {
		return err
	}
	if res.Status != OK {
		return res.Err()
	}
	c.r.Released(tok)
	return nil
}

// Renew is `n`/`sn` (see Replica.Renew).
func (c *Conn) Renew(ctx context.Context, kind core.Kind, key string, tok core.Token, ttl time.Duration) (time.Duration, error) {
	return c.r.Renew(ctx, kind, key, tok, ttl)
}

// Name is `session`: names the connection's session (opening it if
// needed) with ttl, and returns its id and secret.
func (c *Conn) Name(ctx context.Context, ttl time.Duration) (SessionID, Secret, error) {
	id, sec := c.sid, c.secret
	if id == (SessionID{}) {
		id, sec = newIDs()
	}
	res, err := c.r.Propose(ctx, &OpenSession{ID: id, Secret: sec, TTL: ttl, Named: true, Identity: c.identity})
	if err != nil {
		return SessionID{}, Secret{}, err
	}
	if res.Status != OK {
		return SessionID{}, Secret{}, res.Err()
	}
	if c.sid == (SessionID{}) {
		c.sid, c.secret = id, sec
		c.r.attach(id, c)
	}
	c.named, c.ttl = true, ttl
	return id, sec, nil
}

// Resume is `resume`: the connection takes over session id, which must
// have been named, with secret, by the same identity; a connection it is
// attached to is closed first. It answers core.ErrSession for every
// refusal of the session itself, and ErrSessionBusy when this connection
// cannot take one.
func (c *Conn) Resume(ctx context.Context, id SessionID, secret Secret) (held, queued int, err error) {
	if !c.r.Leading() {
		// Only the serving leader's state is known to be caught up.
		return 0, 0, ErrNotLeader
	}
	if c.sid != (SessionID{}) {
		if si, ok := c.r.st.Session(c.sid); c.named || !ok || si.Held+si.Queued > 0 {
			return 0, 0, ErrSessionBusy
		}
	}
	si, ok := c.r.st.Session(id)
	want := Secret{}
	if ok {
		want = si.Secret
	}
	match := subtle.ConstantTimeCompare(secret[:], want[:]) == 1
	if !ok || !match || !si.Named || si.Identity != c.identity {
		return 0, 0, core.ErrSession
	}
	if old := c.r.attach(id, c); old != nil && old != c && old.takeover != nil {
		old.takeover()
		// Its blocked l/sl or w is parked as it ends: answer after it,
		// so that the client's w finds the place.
		old.settle(ctx)
		if si, ok = c.r.st.Session(id); !ok {
			return 0, 0, core.ErrSession
		}
	}
	if c.sid != (SessionID{}) {
		// The connection's own implicit session holds nothing: end it.
		_, _ = c.r.Propose(ctx, &CloseSession{ID: c.sid})
	}
	c.sid, c.secret, c.named, c.ttl = id, secret, true, si.TTL
	c.r.met.resumed.Add(1)
	return si.Held, si.Queued, nil
}

// Bye is `bye`: the session ends now, releasing everything.
func (c *Conn) Bye(ctx context.Context) error {
	if c.sid == (SessionID{}) {
		return nil
	}
	id := c.sid
	c.sid = SessionID{}
	c.r.detach(id, c)
	res, err := c.r.Propose(ctx, &CloseSession{ID: id})
	if err != nil {
		return err
	}
	if res.Status != OK && res.Status != NoSession {
		return res.Err()
	}
	return nil
}

// Close is the end of the connection: a named session is detached (kept
// for its TTL), an implicit one closed, releasing what it held.
func (c *Conn) Close(ctx context.Context) {
	if c.sid == (SessionID{}) {
		return
	}
	id := c.sid
	c.sid = SessionID{}
	if !c.r.detach(id, c) {
		return // taken over by another connection
	}
	if c.named {
		c.r.Detach(id, c.ttl)
		return
	}
	_, _ = c.r.Propose(ctx, &CloseSession{ID: id})
}
