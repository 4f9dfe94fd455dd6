package cluster

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dflockd/dflockd/core"
)

// The leader's side of the replicated state: proposing commands, waking
// the connections whose places are granted, and the timers that only the
// leader runs (CLUSTER.md §4): leases and detached sessions.
//
// A node that becomes leader first waits for a Barrier (it has applied
// every entry of earlier terms), then arms every lease at its recorded
// TTL plus Grace and every session as detached for its TTL plus Grace
// (a named session's blocked l/sl is kept as a two-phase place, as when
// its connection drops), and only then serves. A lease may so live a little longer across a
// failover, never shorter. Renewals are not log entries (unless they
// change the lease's length, see Retime): they move the leader's timer.
// When a timer fires the leader proposes Evict naming the exact token,
// and refuses renewals of it until then. Losing leadership stops every
// timer at once and fails every waiting request.
//
// Lock order: the state's lock (held while the Observer runs) may be
// held while taking Replica.mu, never the other way round: nothing here
// calls the State with mu held.

// ErrNotLeader is returned by the leader-only operations of a Replica
// that is not (or not yet, or no longer) serving as leader.
var ErrNotLeader = errors.New("cluster: not the leader")

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Node configures the raft node; its FSM is the Replica's own.
	Node NodeConfig
	// Grace is added to every lease and session a new leader re-arms
	// (0 = twice the election timeout; never less than the election
	// timeout).
	Grace time.Duration
	// Policy is what this node's configuration says apply should do
	// (default TTL, key and waiter caps, ...): a leader whose flags
	// differ from the replicated policy proposes its own, so the last
	// node to lead with new flags sets it (docs/cluster.md).
	Policy Policy
	// OnStop, when set, is called once if raft shuts down while the
	// replica is open (an unrecoverable error): the node must stop
	// serving.
	OnStop func()
	// Endpoints are this node's client endpoints (URLs), published in
	// the replicated member list for the `cluster` request: proposed
	// when the node leads, announced to the leader when it follows
	// (announce.go).
	Endpoints []string
	// OnLeadership, when set, is called (from the Replica's goroutine)
	// when the node starts serving as leader (true) and when it stops
	// (false): the server closes its client connections then.
	OnLeadership func(leading bool)
}

// Replica is a node of the replicated lock service.
type Replica struct {
	cfg   ReplicaConfig
	node  *Node
	fsm   *FSM
	st    *State
	grace time.Duration

	notify chan bool
	stop   chan struct{}
	cancel context.CancelFunc // stops announceLoop (nil without endpoints)
	wg     sync.WaitGroup

	met replicaMetrics

	mu       sync.Mutex
	leading  bool
	epoch    uint64                    // counts leadership changes
	waiters  map[uint64]chan Grant     // place → the request waiting for it
	leases   map[core.Token]*lease     // armed leases
	heap     leaseHeap                 // their deadlines, earliest first
	sessions map[SessionID]*time.Timer // detached sessions' timers
	attached map[SessionID]*Conn       // sessions' connections
	wake     chan struct{}
}

// lease is one armed lease on the leader.
type lease struct {
	kind     core.Kind
	key      string
	token    core.Token
	ttl      time.Duration
	deadline time.Time
	evicting bool // its Evict is proposed: renewals are refused
}

// StartReplica starts the node and the leader machinery.
func StartReplica(cfg ReplicaConfig) (*Replica, error) {
	r := &Replica{cfg: cfg, st: NewState(), notify: make(chan bool, 16), stop: make(chan struct{}),
		waiters: make(map[uint64]chan Grant), leases: make(map[core.Token]*lease),
		sessions: make(map[SessionID]*time.Timer), attached: make(map[SessionID]*Conn), wake: make(chan struct{}, 1)}
	r.fsm = NewFSM(r.st)
	r.st.SetObserver(r.observe)
	t := cfg.Node.Timeouts.withDefaults()
	r.grace = cfg.Grace
	if r.grace <= 0 {
		r.grace = 2 * t.Election
	}
	r.grace = max(r.grace, t.Election)
	nc := cfg.Node
	nc.FSM = r.fsm
	nc.notify = r.notify
	node, err := StartNode(nc)
	if err != nil {
		return nil, err
	}
	r.node = node
	node.stream.setAnnounceHandler(r.handleAnnounce)
	r.wg.Add(2)
	go r.leadershipLoop()
	go r.leaseLoop()
	if len(cfg.Endpoints) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.wg.Add(1)
		go r.announceLoop(ctx)
	}
	return r, nil
}

// Node returns the raft node.
func (r *Replica) Node() *Node { return r.node }

// State returns the replicated state (read-only queries).
func (r *Replica) State() *State { return r.st }

// Leading reports whether the node serves as leader.
func (r *Replica) Leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

// Close stops the leader machinery and the node. Raft is shut down
// first, so that proposals in flight fail at once.
func (r *Replica) Close() error {
	close(r.stop)
	if r.cancel != nil {
		r.cancel()
	}
	err := r.node.Close()
	r.wg.Wait()
	r.loseLeadership()
	return err
}

// leadershipLoop follows raft's leadership notices, and notices raft
// shutting down on its own.
func (r *Replica) leadershipLoop() {
	defer r.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			if r.node.Raft().State() == raft.Shutdown {
				r.loseLeadership()
				if r.cfg.OnStop != nil {
					r.cfg.OnStop()
				}
				return
			}
		case leader := <-r.notify:
			r.met.leaderChanges.Add(1)
			if !leader {
				r.loseLeadership()
				continue
			}
			r.gainLeadership()
		}
	}
}

// gainLeadership catches up (Barrier), arms every lease and session, and
// starts serving. A leadership lost meanwhile aborts it.
func (r *Replica) gainLeadership() {
	if err := r.await(context.Background(), r.node.Raft().Barrier(30*time.Second)); err != nil {
		return // not leader any more (a false notice follows), or stopping
	}
	if err := r.parkOrphans(); err != nil {
		return // as above
	}
	now := time.Now()
	holders := r.st.Holders()
	sessions := r.st.Sessions()
	r.mu.Lock()
	if r.node.Raft().State() != raft.Leader {
		r.mu.Unlock()
		return
	}
	r.epoch++
	for _, h := range holders {
		r.armLocked(h.Kind, h.Key, h.Token, h.TTL, now.Add(h.TTL+r.grace))
	}
	for _, s := range sessions {
		ttl := time.Duration(0)
		if s.Named {
			ttl = s.TTL
		}
		r.detachLocked(s.ID, ttl+r.grace)
	}
	r.leading = true
	r.mu.Unlock()
	r.kick()
	if len(r.cfg.Endpoints) > 0 && !r.published(r.node.ID(), r.cfg.Endpoints) {
		_, _ = r.propose(context.Background(), &SetMember{Node: r.node.ID(), Endpoints: r.cfg.Endpoints})
	}
	if r.st.Policy() != r.cfg.Policy {
		_, _ = r.propose(context.Background(), &SetPolicy{Policy: r.cfg.Policy})
	}
	if r.cfg.OnLeadership != nil {
		r.cfg.OnLeadership(true)
	}
}

// parkOrphans keeps every blocked l/sl of a named session as a two-phase
// place, as a dropped connection's Park does: the connections that were
// waiting for them were on an earlier leader, so nobody waits for them
// here, and a single-phase place would be granted to nobody (its token
// unknown to its client) while w could not collect it. Places of
// implicit sessions are dropped with their sessions, a grace from now.
func (r *Replica) parkOrphans() error {
	named := make(map[SessionID]bool)
	for _, s := range r.st.Sessions() {
		named[s.ID] = s.Named
	}
	for _, kind := range []core.Kind{core.KindLock, core.KindSemaphore} {
		for _, k := range r.st.Keys(kind) {
			for _, p := range k.Queue {
				if p.TwoPhase || !named[p.Session] {
					continue
				}
				if _, err := r.propose(context.Background(), &Park{Kind: kind, Key: k.Key, Place: p.Place}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// loseLeadership stops every timer and fails every waiter.
func (r *Replica) loseLeadership() {
	r.mu.Lock()
	was := r.leading
	r.leading = false
	r.epoch++
	clear(r.leases)
	r.heap = r.heap[:0]
	for id, t := range r.sessions {
		t.Stop()
		delete(r.sessions, id)
	}
	for p, ch := range r.waiters {
		close(ch)
		delete(r.waiters, p)
	}
	clear(r.attached)
	r.mu.Unlock()
	if was && r.cfg.OnLeadership != nil {
		r.cfg.OnLeadership(false)
	}
}

// observe is the state's Observer: on the leader a grant arms its lease
// and wakes the request waiting for its place.
func (r *Replica) observe(g Grant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leading {
		return
	}
	r.armLocked(g.Kind, g.Key, g.Token, g.TTL, time.Now().Add(g.TTL))
	if ch, ok := r.waiters[g.Place]; ok {
		delete(r.waiters, g.Place)
		ch <- g // buffered: never blocks
	}
}

// armLocked arms a lease unless it is armed already; r.mu is held.
func (r *Replica) armLocked(kind core.Kind, key string, tok core.Token, ttl time.Duration, deadline time.Time) {
	if _, ok := r.leases[tok]; ok {
		return
	}
	l := &lease{kind: kind, key: key, token: tok, ttl: ttl, deadline: deadline}
	r.leases[tok] = l
	heap.Push(&r.heap, leaseItem{at: deadline, l: l})
	r.kick()
}

// kick wakes the lease loop to look at the heap again.
func (r *Replica) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// stamp fills a command's leader time and seed.
func stamp(c Command) {
	at, seed := Stamp()
	switch c := c.(type) {
	case *OpenSession:
		c.At = at
	case *CloseSession:
		c.At, c.Seed = at, seed
	case *Acquire:
		c.At, c.Seed = at, seed
	case *Release:
		c.At, c.Seed = at, seed
	case *Cancel:
		c.At, c.Seed = at, seed
	case *Collect:
		c.At = at
	case *Park:
		c.At, c.Seed = at, seed
	case *Evict:
		c.At, c.Seed = at, seed
	case *Retime:
		c.At = at
	case *SetPolicy:
		c.At = at
	case *SetMember:
		c.At = at
	}
}

// applyTimeout bounds a proposal without a context deadline.
const applyTimeout = 10 * time.Second

// Propose stamps c, replicates it and returns its result once a majority
// has it and it is applied here. Only the serving leader proposes.
func (r *Replica) Propose(ctx context.Context, c Command) (Result, error) {
	if !r.Leading() {
		return Result{}, ErrNotLeader
	}
	return r.propose(ctx, c)
}

func (r *Replica) propose(ctx context.Context, c Command) (Result, error) {
	stamp(c)
	b, err := Encode(c)
	if err != nil {
		return Result{}, err
	}
	timeout := applyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	select {
	case <-r.stop:
		return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, raft.ErrRaftShutdown)
	default:
	}
	t0 := time.Now()
	f := r.node.Raft().Apply(b, timeout)
	err = r.await(ctx, f)
	r.met.observe(time.Since(t0))
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return Result{}, fmt.Errorf("cluster: replicate: %w", err)
	}
	res, ok := f.Response().(Result)
	if !ok {
		return Result{}, fmt.Errorf("cluster: replicate: unexpected result %T", f.Response())
	}
	return res, nil
}

// placeID returns a random non-zero place id: unique across terms and
// leaders with overwhelming probability (the state refuses a live id
// anyway, PlaceInUse).
func placeID() uint64 {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("cluster: crypto/rand: " + err.Error())
		}
		if p := binary.LittleEndian.Uint64(b[:]); p != 0 {
			return p
		}
	}
}

// await waits for f. raft answers every future it takes, except one
// left in its (buffered, with BatchApplyCh) apply channel when it shuts
// down: so the wait also ends when ctx ends, when the replica closes, or
// when raft is seen shut down. The goroutine that waits on such a
// stranded future stays until the process exits.
func (r *Replica) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("cluster: replicate: %w", ctx.Err())
		case <-r.stop:
			return raft.ErrRaftShutdown
		case <-tick.C:
			if r.node.Raft().State() == raft.Shutdown {
				select {
				case err := <-done:
					return err
				case <-time.After(time.Second):
					return raft.ErrRaftShutdown
				}
			}
		}
	}
}

// NewPlace returns a fresh place id and watches it (see Watch).
func (r *Replica) NewPlace() (uint64, <-chan Grant) {
	p := placeID()
	return p, r.Watch(p)
}

// Watch registers a waiter for place: the returned channel receives the
// place's grant, or is closed when the node stops leading. Call Forget
// when the request ends without it.
func (r *Replica) Watch(place uint64) <-chan Grant {
	ch := make(chan Grant, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leading {
		close(ch)
	} else {
		r.waiters[place] = ch
	}
	return ch
}

// restartLease sets a lease's timer to ttl from now (a collected
// two-phase grant).
func (r *Replica) restartLease(tok core.Token, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.leases[tok]; l != nil && !l.evicting {
		l.ttl, l.deadline = ttl, time.Now().Add(ttl)
		heap.Push(&r.heap, leaseItem{at: l.deadline, l: l})
		r.kick()
	}
}

// attach records c as the connection of session id, stopping a detached
// session's timer; it returns the connection attached before, if any.
func (r *Replica) attach(id SessionID, c *Conn) (old *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old = r.attached[id]
	r.attached[id] = c
	if t := r.sessions[id]; t != nil {
		t.Stop()
		delete(r.sessions, id)
	}
	return old
}

// detach forgets c as the connection of session id; false when another
// connection has taken the session over.
func (r *Replica) detach(id SessionID, c *Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attached[id] != c {
		return false
	}
	delete(r.attached, id)
	return true
}

// Forget drops the waiter of place.
func (r *Replica) Forget(place uint64) {
	r.mu.Lock()
	delete(r.waiters, place)
	r.mu.Unlock()
}

// Renew extends the lease of token on the leader's timer: not a log
// entry, unless ttl differs from the lease's recorded length (then a
// Retime is proposed first). ttl 0 is the policy's default. It answers
// core.ErrNotHolder for a token that holds nothing and
// core.ErrLeaseExpired for one whose lease has run out.
func (r *Replica) Renew(ctx context.Context, kind core.Kind, key string, tok core.Token, ttl time.Duration) (time.Duration, error) {
	h, ok := r.st.Holder(kind, key, tok)
	if !ok {
		if !r.Leading() {
			return 0, ErrNotLeader
		}
		return 0, core.ErrNotHolder
	}
	if ttl <= 0 {
		ttl = r.st.Policy().defaultTTL()
	}
	now := time.Now()
	r.mu.Lock()
	if !r.leading {
		r.mu.Unlock()
		return 0, ErrNotLeader
	}
	l := r.leases[tok]
	if l == nil || l.evicting || !now.Before(l.deadline) {
		r.mu.Unlock()
		return 0, core.ErrLeaseExpired
	}
	r.mu.Unlock()
	if ttl != h.TTL {
		res, err := r.propose(ctx, &Retime{Kind: kind, Key: key, Token: tok, TTL: ttl})
		if err != nil {
			return 0, err
		}
		if res.Status != OK {
			return 0, res.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leading || r.leases[tok] != l || l.evicting {
		return 0, core.ErrLeaseExpired
	}
	l.ttl = ttl
	l.deadline = now.Add(ttl)
	heap.Push(&r.heap, leaseItem{at: l.deadline, l: l})
	r.kick()
	return ttl, nil
}

// Released tells the leader that token no longer holds (its Release was
// applied), so its timer is dropped at once.
func (r *Replica) Released(tok core.Token) {
	r.mu.Lock()
	delete(r.leases, tok)
	r.mu.Unlock()
}

// Detach arms the timer of a session whose connection is gone: when ttl
// passes without Attach, the leader proposes its CloseSession.
func (r *Replica) Detach(id SessionID, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leading {
		r.detachLocked(id, ttl)
	}
}

func (r *Replica) detachLocked(id SessionID, ttl time.Duration) {
	if t := r.sessions[id]; t != nil {
		t.Stop()
	}
	epoch := r.epoch
	r.sessions[id] = time.AfterFunc(ttl, func() { r.expireSession(id, epoch) })
}

// Attach stops a detached session's timer (its client is back).
func (r *Replica) Attach(id SessionID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.sessions[id]; t != nil {
		t.Stop()
		delete(r.sessions, id)
	}
}

// expireSession proposes the close of a session whose TTL ran out, unless
// it was attached again or leadership changed meanwhile.
func (r *Replica) expireSession(id SessionID, epoch uint64) {
	r.mu.Lock()
	if !r.leading || r.epoch != epoch || r.sessions[id] == nil {
		r.mu.Unlock()
		return
	}
	delete(r.sessions, id)
	r.mu.Unlock()
	si, _ := r.st.Session(id)
	if res, err := r.propose(context.Background(), &CloseSession{ID: id}); err == nil && res.Status == OK && si.Named {
		r.met.expired.Add(1)
	}
}

// leaseLoop fires lease timers: due leases are marked evicting and their
// Evict proposed, one per key.
func (r *Replica) leaseLoop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		now := time.Now()
		due := make(map[keyRef][]*lease)
		next := time.Hour
		for len(r.heap) > 0 {
			it := r.heap[0]
			if r.leases[it.l.token] != it.l || !it.at.Equal(it.l.deadline) || it.l.evicting {
				heap.Pop(&r.heap) // stale entry: renewed, released or evicting
				continue
			}
			if it.at.After(now) {
				next = it.at.Sub(now)
				break
			}
			heap.Pop(&r.heap)
			it.l.evicting = true
			k := keyRef{it.l.kind, it.l.key}
			due[k] = append(due[k], it.l)
		}
		epoch := r.epoch
		r.mu.Unlock()
		for k, ls := range due {
			toks := make([]core.Token, len(ls))
			for i, l := range ls {
				toks[i] = l.token
			}
			r.wg.Add(1)
			go r.evict(epoch, k.kind, k.name, toks)
		}
		timer.Reset(next)
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// evict proposes the eviction of expired tokens and forgets their leases.
func (r *Replica) evict(epoch uint64, kind core.Kind, key string, toks []core.Token) {
	defer r.wg.Done()
	_, err := r.propose(context.Background(), &Evict{Kind: kind, Key: key, Tokens: toks})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.epoch != epoch {
		return // a new leader re-armed everything
	}
	for _, t := range toks {
		if l := r.leases[t]; l != nil {
			if err != nil {
				// Not replicated (leadership moving): the next leader
				// decides; keep refusing renewals meanwhile.
				continue
			}
			delete(r.leases, t)
		}
	}
}

// leaseItem is a deadline in the lease heap.
type leaseItem struct {
	at time.Time
	l  *lease
}

type leaseHeap []leaseItem

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h leaseHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *leaseHeap) Push(x any)        { *h = append(*h, x.(leaseItem)) }
func (h *leaseHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = leaseItem{}
	*h = old[:len(old)-1]
	return it
}

// NodeStatus is what the `cluster` request answers about this node's
// view of the cluster.
type NodeStatus struct {
	Node          string         `json:"node"`
	Role          string         `json:"role"` // leader, follower, candidate, shutdown
	Serving       bool           `json:"serving"`
	Leader        *StatusMember  `json:"leader"` // nil while none is known
	Term          uint64         `json:"term"`
	CommitIndex   uint64         `json:"commit_index"`
	AppliedIndex  uint64         `json:"applied_index"`
	LastIndex     uint64         `json:"last_index"`
	LastContactMS int64          `json:"last_contact_ms"` // from the leader; -1 never, 0 on the leader
	Members       []StatusMember `json:"members"`
}

// StatusMember is one member of the configuration.
type StatusMember struct {
	ID        string   `json:"id"`
	Raft      string   `json:"raft"`
	Voter     bool     `json:"voter"`
	Endpoints []string `json:"endpoints"` // client endpoints, [] when not known yet
}

// Status returns this node's view of the cluster.
func (r *Replica) Status() NodeStatus {
	rf := r.node.Raft()
	st := NodeStatus{Node: r.node.ID(), Role: stateName(rf.State()), Serving: r.Leading(), Term: rf.CurrentTerm(),
		CommitIndex: rf.CommitIndex(), AppliedIndex: rf.AppliedIndex(), LastIndex: rf.LastIndex(), Members: []StatusMember{}}
	switch lc := rf.LastContact(); {
	case rf.State() == raft.Leader:
	case lc.IsZero():
		st.LastContactMS = -1
	default:
		st.LastContactMS = time.Since(lc).Milliseconds()
	}
	eps := make(map[string][]string)
	for _, m := range r.st.Members() {
		eps[m.Node] = m.Endpoints
	}
	_, leaderID := rf.LeaderWithID()
	if f := rf.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			m := StatusMember{ID: string(s.ID), Raft: string(s.Address), Voter: s.Suffrage == raft.Voter, Endpoints: eps[string(s.ID)]}
			if m.Endpoints == nil {
				m.Endpoints = []string{}
			}
			st.Members = append(st.Members, m)
			if s.ID == leaderID {
				lm := m
				st.Leader = &lm
			}
		}
	}
	return st
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// membershipTimeout bounds a configuration change.
const membershipTimeout = 30 * time.Second

// AddMember adds a node to the configuration, as a voter or not; only the
// leader can.
func (r *Replica) AddMember(id, addr string, voter bool) error {
	if !r.Leading() {
		return ErrNotLeader
	}
	rf := r.node.Raft()
	var f raft.IndexFuture
	if voter {
		f = rf.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout)
	} else {
		f = rf.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout)
	}
	if err := r.await(context.Background(), f); err != nil {
		return fmt.Errorf("cluster: add %s: %w", id, err)
	}
	return nil
}

// RemoveMember removes a node from the configuration; only the leader
// can. Removing an unknown node is an error.
func (r *Replica) RemoveMember(id string) error {
	if !r.Leading() {
		return ErrNotLeader
	}
	rf := r.node.Raft()
	cf := rf.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return fmt.Errorf("cluster: %s is not a member", id)
	}
	if err := r.await(context.Background(), rf.RemoveServer(raft.ServerID(id), 0, membershipTimeout)); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	// Its endpoints go with it (best effort: the `cluster` answer lists
	// only members of the configuration anyway; a leader that removed
	// itself no longer leads).
	if id != r.node.ID() {
		_, _ = r.Propose(context.Background(), &SetMember{Node: id})
	}
	return nil
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is empty; only the leader can.
func (r *Replica) TransferLeadership(id string) error {
	if !r.Leading() {
		return ErrNotLeader
	}
	rf := r.node.Raft()
	var f raft.Future
	if id == "" {
		f = rf.LeadershipTransfer()
	} else {
		cf := rf.GetConfiguration()
		if err := cf.Error(); err != nil {
			return err
		}
		var addr raft.ServerAddress
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == id {
				addr = s.Address
			}
		}
		if addr == "" {
			return fmt.Errorf("cluster: %s is not a member", id)
		}
		f = rf.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := r.await(context.Background(), f); err != nil {
		return fmt.Errorf("cluster: leadership transfer: %w", err)
	}
	return nil
}

// Ready reports whether the node can serve clients: raft is running and
// a leader is known (this node, serving, or another one to relay to).
func (r *Replica) Ready() error {
	rf := r.node.Raft()
	if rf.State() == raft.Shutdown {
		return errors.New("cluster: raft is not running")
	}
	addr, id := rf.LeaderWithID()
	if addr == "" {
		return errors.New("cluster: no leader known")
	}
	if string(id) == r.node.ID() && !r.Leading() {
		return errors.New("cluster: this node leads but is not serving yet (catching up)")
	}
	return nil
}

// ApplyBuckets are the upper bounds, in seconds, of the apply latency
// histogram (Metrics); one more bucket counts slower applies.
var ApplyBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// replicaMetrics are the Replica's counters.
type replicaMetrics struct {
	leaderChanges atomic.Uint64
	resumed       atomic.Uint64 // named sessions resumed on this node
	expired       atomic.Uint64 // sessions this node closed at the end of their TTL
	applies       [len(ApplyBuckets) + 1]atomic.Uint64
	applyNanos    atomic.Int64
}

func (m *replicaMetrics) observe(d time.Duration) {
	i := 0
	for i < len(ApplyBuckets) && d.Seconds() > ApplyBuckets[i] {
		i++
	}
	m.applies[i].Add(1)
	m.applyNanos.Add(int64(d))
}

// Metrics is a snapshot of a node's raft figures.
type Metrics struct {
	State                           string // leader, follower, candidate, shutdown
	Term, CommitIndex, AppliedIndex uint64
	LastIndex                       uint64
	LeaderChanges                   uint64 // leadership notices: gained or lost
	ApplyCounts                     [len(ApplyBuckets) + 1]uint64
	ApplySum                        time.Duration
}

// Metrics returns the node's raft figures and the latency of its
// proposals (from Apply to the result, on the leader).
func (r *Replica) Metrics() Metrics {
	rf := r.node.Raft()
	m := Metrics{State: stateName(rf.State()), Term: rf.CurrentTerm(), CommitIndex: rf.CommitIndex(),
		AppliedIndex: rf.AppliedIndex(), LastIndex: rf.LastIndex(), LeaderChanges: r.met.leaderChanges.Load(),
		ApplySum: time.Duration(r.met.applyNanos.Load())}
	for i := range m.ApplyCounts {
		m.ApplyCounts[i] = r.met.applies[i].Load()
	}
	return m
}

// SessionStats counts the named sessions as the leader sees them:
// attached (a connection on this node holds the session) and detached
// (waiting to be resumed); and the sessions resumed on, and expired by,
// this node while it led. A node that does not lead owns no connection
// of any session: it answers zero attached and detached.
func (r *Replica) SessionStats() core.SessionStats {
	ss := core.SessionStats{Resumed: r.met.resumed.Load(), Expired: r.met.expired.Load()}
	if !r.Leading() {
		return ss
	}
	named := r.st.Stats().NamedSessions
	r.mu.Lock()
	ids := make([]SessionID, 0, len(r.attached))
	for id := range r.attached {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		if si, ok := r.st.Session(id); ok && si.Named {
			ss.Attached++
		}
	}
	ss.Detached = max(named-ss.Attached, 0)
	return ss
}

// LeaseLeft returns how long the lease of token has left on this node's
// timer; false on a node that does not lead, or for a token it does not
// time.
func (r *Replica) LeaseLeft(tok core.Token) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leases[tok]
	if !r.leading || l == nil {
		return 0, false
	}
	return max(time.Until(l.deadline), 0), true
}
