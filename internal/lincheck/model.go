// Package lincheck checks dflockd's lock and semaphore service for
// linearizability with porcupine. This file holds the sequential model;
// the tests record histories against a real server (see lincheck_test.go).
//
// The model is per key (one porcupine partition per namespace+key). Its
// state carries the virtual time of the server's test clock, the holders
// of the key (token, owner, lease end), the FIFO of queued waiters, the
// highest fencing number known to be granted and the named sessions whose
// owners use the key. Time only moves through explicit OpAdvance
// operations, and expired leases are evicted where the server evicts
// them: by OpSweep, by acquire/enqueue on the key, by renew or wait of the
// expired token.
//
// Tokens cannot be predicted, so the model learns them from the history:
// a successful acquire adds the token it returned; release/renew with a
// token succeed iff that token is currently a holder. A slot granted to a
// queued waiter holds a token that is unknown until an answer reveals it;
// its fence must then exceed every fence known when it was granted.
//
// Owners. Holders and waiters belong to an owner, named by the id of the
// connection that created it. An unnamed connection's owner dies with it.
// A connection that names its session (OpSession) makes its owner
// outlive it: when the connection ends without `bye` (OpDisconnect) the
// session is detached with a deadline of now + its TTL, and keeps its
// holders and queue places; OpResume attaches it to a new connection,
// whose operations then act for the session's owner; OpExpireSessions
// ends every detached session whose deadline has passed, releasing
// everything as a disconnect does; OpBye ends the connection's session
// (or releases an unnamed owner) at once. Sessions are state of the
// partition of their key: the harness binds every session to one key, so
// that a resume's held and queued counts are this key's alone and exact.
//
// Blocking acquires (l/sl with a timeout) come in two models, chosen per
// operation by Input.Tracked:
//
//   - Atomic (untracked): the grant may be linearized anywhere in the
//     call, and a `timeout` answer is "did not get it". The waiter is not
//     part of the state, which is sound only if the key never mixes such
//     acquires with queued two-phase records (their relative FIFO order
//     would be unobservable) and no named session blocks on it (its
//     waiter would outlive the call). The unnamed workload keeps those on
//     separate keys. The arrival's eviction is its own operation
//     (OpEvict).
//   - Tracked: the arrival is an OpJoin over the acquire's interval,
//     which evicts expired holders and either takes a free slot
//     (a "pending" holder: granted, answer not yet given) or joins the
//     FIFO as a single-phase waiter; the answer then reads the pending
//     grant (`ok`, or `error_lease_expired` when its lease ran out before
//     the waiter saw it) or removes the waiter (`timeout`). Every waiter of
//     the key is then in the state in FIFO order, so single-phase and
//     two-phase waiters may share the key. Named sessions block only on
//     tracked keys.
//
// When a named session's connection ends while it blocks in l/sl, the
// server keeps the place as the session's enqueue record for the key
// (as if `e`/`se` had been sent): the model turns the single-phase
// waiter into a two-phase one in place (same FIFO position), and a
// pending grant into a granted record whose lease runs from the grant; a
// later `w` collects it, resetting the lease, as for any record. If the
// session already has a record for the key, the place is given up
// instead. A pending grant evicted before its waiter saw it leaves a
// "lapsed" mark: the waiter answers error_lease_expired, or, if the
// connection ended first, nothing is parked (the engine drops it).
//
// Try-locks (timeout 0) are exact: `timeout` requires every slot taken or
// someone queued.
//
// Operations whose answer was lost (connection cut or closed mid-request)
// may have taken any of their possible effects or none; an OpDisconnect
// then ends the connection (release or detach, see above) somewhere
// between the close and the moment the server was seen to forget the
// connection.
package lincheck

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dflockd/dflockd/core"
)

// OpKind names a modelled operation.
type OpKind uint8

// Operations of the model.
const (
	// OpAcquire is l / sl with Input.Timeout seconds (0 = try-lock). With
	// Input.Tracked and a timeout it is the answer of a tracked blocking
	// acquire whose arrival is an OpJoin.
	OpAcquire OpKind = iota
	// OpRelease is r / sr with Input.Token.
	OpRelease
	// OpRenew is n / sn with Input.Token and lease Input.TTL.
	OpRenew
	// OpEnqueue is e / se with lease Input.TTL.
	OpEnqueue
	// OpWait is w / sw with Input.Timeout seconds.
	OpWait
	// OpAdvance moves the test clock forward by Input.D. It applies to
	// every key.
	OpAdvance
	// OpSweep is Engine.ExpireDue followed by Engine.Sweep: every expired
	// holder of every key is evicted and its slot handed on.
	OpSweep
	// OpExpireDue is Engine.ExpireDue alone: only keys registered in the
	// deadline heap are swept, which the model does not track, so each
	// key may or may not be swept.
	OpExpireDue
	// OpDisconnect is the end of connection Input.Conn without `bye`, as
	// observed by the server: an unnamed owner's queued records are
	// dropped and its slots released; a named session is detached.
	OpDisconnect
	// OpEvict is the eviction of expired holders that an untracked
	// blocking acquire (l/sl with a timeout) performs when it arrives. It
	// is recorded as its own operation over the acquire's interval,
	// because a queued waiter is granted later, by whoever frees a slot,
	// without a second eviction: folding both into one point would evict
	// leases that expired in between.
	OpEvict
	// OpJoin is the arrival of a tracked blocking acquire (Input.TTL is
	// its lease), recorded over the acquire's interval: it evicts expired
	// holders, then takes a free slot or joins the FIFO.
	OpJoin
	// OpSession is `session` with the effective session TTL Input.TTL
	// (the asked or default TTL, capped at the server's maximum).
	OpSession
	// OpResume is `resume` of session Input.SID with Input.Secret.
	OpResume
	// OpBye is `bye`: the connection's session ends, or its unnamed
	// owner is released, before the answer; then the connection closes.
	OpBye
	// OpExpireSessions is Engine.ExpireSessions: every detached session
	// whose deadline has passed is ended and its owner released. It
	// applies to every key.
	OpExpireSessions
	// OpTick is a reading of the real clock for the cluster model
	// (ClusterModel): Input.At is the time of the reading and Input.Next
	// that of the next one, so every operation linearized between the two
	// took effect within [At, Next]. It applies to every key.
	OpTick
)

var opNames = [...]string{"acquire", "release", "renew", "enqueue", "wait", "advance", "sweep", "expiredue", "disconnect", "evict",
	"join", "session", "resume", "bye", "expiresessions", "tick"}

// String returns the operation's name.
func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// StatusLost is the Output.Status of an operation whose answer never
// arrived because its connection was cut or closed.
const StatusLost = "lost"

// Input is the input of one operation.
type Input struct {
	Op OpKind
	// Key is the partition key: Namespace(sem, name); empty for the
	// global operations (advance, sweep, expiredue, expiresessions,
	// disconnect).
	Key string
	// Limit is the key's number of slots (1 for locks).
	Limit int
	// Conn identifies the connection that issued the operation (unique
	// per connection, not per client: a reconnecting client gets a new
	// one). For OpDisconnect it is the connection that ended.
	Conn int
	// Timeout is the acquire/wait timeout in seconds.
	Timeout int
	// Tracked marks a blocking acquire whose arrival is recorded as an
	// OpJoin (see the package comment).
	Tracked bool
	// TTL is the effective lease length (the default when the request
	// named none), or the effective session TTL of OpSession.
	TTL time.Duration
	// Token is the token of a release or renew.
	Token string
	// D is the clock advance of OpAdvance.
	D time.Duration
	// SID and Secret are the arguments of OpResume.
	SID, Secret string
	// Owner is the owner an operation of the cluster model acts for: a
	// named session's number, or the connection's own (unnamed); 0 in
	// the single-node model, which derives owners from connections.
	Owner int
	// At and Next bracket an OpTick (times since the run's start).
	At, Next time.Duration
}

// Output is the answer of one operation.
type Output struct {
	// Status is the wire status word ("ok", "timeout", "acquired",
	// "queued", "error", "error_not_enqueued", "error_session", ...) or
	// StatusLost.
	Status string
	// Token is the granted token of ok/acquired answers.
	Token string
	// TTL is the lease in seconds echoed by grants and renewals, or the
	// session TTL of a `session` answer; -1 = not checked.
	TTL int64
	// SID and Secret are the session of a `session` answer ("" = not
	// known).
	SID, Secret string
	// Held and Queued are the counts of a `resume` answer; -1 = not
	// checked.
	Held, Queued int
}

// Namespace returns the partition key of key in the lock or semaphore
// namespace.
func Namespace(sem bool, key string) string {
	if sem {
		return "sem:" + key
	}
	return "lock:" + key
}

// Holder is one granted slot in the model.
type Holder struct {
	Token   string // "" when the history never revealed it
	Owner   int
	Expires time.Duration // virtual time
	TTL     time.Duration // lease length, used by a record's wait
	Rec     bool          // still bound to a two-phase enqueue record
	Pend    bool          // granted to a tracked blocking acquire that has not answered
	Floor   uint64        // an unrevealed token's fence is above this
}

// Waiter is a queued waiter: a two-phase enqueue record, or a tracked
// blocking acquire (Single).
type Waiter struct {
	Owner  int
	TTL    time.Duration
	Single bool
}

// Lapse marks a tracked blocking acquire granted a slot that was evicted
// before its waiter saw it: its answer is error_lease_expired, or, once
// parked at a detach, it is a dead enqueue record of the owner.
type Lapse struct {
	Owner  int
	Parked bool
}

// Session is a named session whose owner uses the key.
type Session struct {
	ID, Secret string // "" while the naming answer is unknown
	Owner      int
	Conn       int // the attached connection; 0 while detached
	TTL        time.Duration
	Deadline   time.Duration // virtual time; while detached
}

// State is the model state of one key. It is never mutated in place.
type State struct {
	Now       time.Duration // virtual time since the clock's start
	Limit     int           // 0 until the first keyed operation
	Holders   []Holder      // sorted (a set)
	Queue     []Waiter      // FIFO
	LastFence uint64        // highest fence known granted
	Lapsed    []Lapse       // sorted
	Sessions  []Session     // sorted by owner
}

// clone copies the holders and the queue, which most steps change.
// Lapsed and Sessions, which few do, stay shared: they are never changed
// in place, only replaced (see ownSessions).
func (s State) clone() State {
	s.Holders = cloneSlice(s.Holders)
	s.Queue = cloneSlice(s.Queue)
	return s
}

// ownSessions gives s a private copy of its sessions, to change.
func (s *State) ownSessions() { s.Sessions = cloneSlice(s.Sessions) }

// cloneSlice copies x, keeping an empty one nil (no allocation).
func cloneSlice[T any](x []T) []T {
	if len(x) == 0 {
		return nil
	}
	return append(make([]T, 0, len(x)+1), x...)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func holderLess(a, b Holder) int {
	return cmp.Or(cmp.Compare(a.Owner, b.Owner), strings.Compare(a.Token, b.Token), cmp.Compare(a.Expires, b.Expires),
		cmp.Compare(a.TTL, b.TTL), boolCmp(a.Rec, b.Rec), boolCmp(a.Pend, b.Pend), cmp.Compare(a.Floor, b.Floor))
}

func (s *State) addHolder(h Holder) {
	s.Holders = append(s.Holders, h)
	slices.SortFunc(s.Holders, holderLess)
}

func (s *State) removeHolder(i int) {
	s.Holders = slices.Delete(s.Holders, i, i+1)
}

func (s *State) addLapse(l Lapse) {
	s.Lapsed = append(cloneSlice(s.Lapsed), l)
	slices.SortFunc(s.Lapsed, func(a, b Lapse) int { return cmp.Or(cmp.Compare(a.Owner, b.Owner), boolCmp(a.Parked, b.Parked)) })
}

func (s *State) findLapse(owner int, parked bool) int {
	return slices.Index(s.Lapsed, Lapse{Owner: owner, Parked: parked})
}

// free reports whether a newcomer would be granted at once: a slot is
// free and nobody is queued.
func (s *State) free() bool { return len(s.Holders) < s.Limit && len(s.Queue) == 0 }

// grant hands free slots to queued waiters in FIFO order: a record
// becomes a granted record, a single-phase waiter a pending grant.
func (s *State) grant() {
	for len(s.Holders) < s.Limit && len(s.Queue) > 0 {
		w := s.Queue[0]
		s.Queue = slices.Delete(s.Queue, 0, 1)
		s.addHolder(Holder{Owner: w.Owner, Expires: s.Now + w.TTL, TTL: w.TTL, Rec: !w.Single, Pend: w.Single, Floor: s.LastFence})
	}
}

// evict drops expired holders (their records with them; a pending grant
// leaves a lapse) and hands the slots on.
func (s *State) evict() {
	n := 0
	for _, h := range s.Holders {
		if h.Expires > s.Now {
			s.Holders[n] = h
			n++
		} else if h.Pend {
			s.addLapse(Lapse{Owner: h.Owner})
		}
	}
	s.Holders = s.Holders[:n]
	s.grant()
}

func (s *State) findToken(tok string) int {
	if tok == "" {
		return -1
	}
	for i, h := range s.Holders {
		if h.Token == tok {
			return i
		}
	}
	return -1
}

// record finds owner's enqueue record: a holder index, a queue index or
// a dead (lapsed, parked) one.
func (s *State) record(owner int) (holder, queued, dead int) {
	holder, queued = -1, -1
	for i, h := range s.Holders {
		if h.Rec && h.Owner == owner {
			holder = i
		}
	}
	for i, w := range s.Queue {
		if !w.Single && w.Owner == owner {
			queued = i
		}
	}
	return holder, queued, s.findLapse(owner, true)
}

func (s *State) hasRecord(owner int) bool {
	h, q, d := s.record(owner)
	return h >= 0 || q >= 0 || d >= 0
}

// pending finds owner's tracked blocking acquire: a pending grant, a
// queued single-phase waiter, or a lapse.
func (s *State) pending(owner int) (holder, queued, lapsed int) {
	holder = slices.IndexFunc(s.Holders, func(h Holder) bool { return h.Pend && h.Owner == owner })
	queued = slices.IndexFunc(s.Queue, func(w Waiter) bool { return w.Single && w.Owner == owner })
	return holder, queued, s.findLapse(owner, false)
}

// counts returns what owner holds (live slots, granted records
// included) and waits for (queue places), as a resume answers them. A
// slot whose lease has run out is not held, evicted or not: a renew or a
// wait would find it gone.
func (s *State) counts(owner int) (held, queued int) {
	for _, h := range s.Holders {
		if h.Owner == owner && h.Expires > s.Now {
			held++
		}
	}
	for _, w := range s.Queue {
		if w.Owner == owner {
			queued++
		}
	}
	return held, queued
}

// owns reports whether owner has anything on the key.
func (s *State) owns(owner int) bool {
	return slices.ContainsFunc(s.Holders, func(h Holder) bool { return h.Owner == owner }) ||
		slices.ContainsFunc(s.Queue, func(w Waiter) bool { return w.Owner == owner }) ||
		slices.ContainsFunc(s.Lapsed, func(l Lapse) bool { return l.Owner == owner })
}

// release drops everything of owner and hands the slots on.
func (s *State) release(owner int) {
	s.Queue = slices.DeleteFunc(s.Queue, func(w Waiter) bool { return w.Owner == owner })
	s.Holders = slices.DeleteFunc(s.Holders, func(h Holder) bool { return h.Owner == owner })
	if slices.ContainsFunc(s.Lapsed, func(l Lapse) bool { return l.Owner == owner }) {
		s.Lapsed = slices.DeleteFunc(cloneSlice(s.Lapsed), func(l Lapse) bool { return l.Owner == owner })
	}
	s.grant()
}

// attached returns the index of the session attached to conn, or -1.
func (s *State) attached(conn int) int {
	return slices.IndexFunc(s.Sessions, func(x Session) bool { return x.Conn == conn })
}

// owner returns the owner connection conn acts for.
func (s *State) owner(conn int) int {
	if i := s.attached(conn); i >= 0 {
		return s.Sessions[i].Owner
	}
	return conn
}

// park keeps owner's tracked blocking acquire as its enqueue record, in
// place, unless owner already has one for the key, in which case the
// place is given up.
func (s *State) park(owner int) {
	drop := s.hasRecord(owner)
	for i := range s.Queue {
		if w := &s.Queue[i]; w.Single && w.Owner == owner {
			if drop {
				s.Queue = slices.Delete(s.Queue, i, i+1)
			} else {
				w.Single = false
			}
			break
		}
	}
	for i := range s.Holders {
		if h := &s.Holders[i]; h.Pend && h.Owner == owner {
			if drop {
				s.removeHolder(i)
				s.grant()
			} else {
				h.Pend, h.Rec = false, true
				slices.SortFunc(s.Holders, holderLess)
			}
			break
		}
	}
	if i := s.findLapse(owner, false); i >= 0 {
		// A grant that ran out unseen leaves nothing to park.
		s.Lapsed = slices.Delete(cloneSlice(s.Lapsed), i, i+1)
	}
}

func (s *State) sortSessions() {
	slices.SortFunc(s.Sessions, func(a, b Session) int { return cmp.Compare(a.Owner, b.Owner) })
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// newGrant checks a directly granted token (fence strictly above every
// fence known granted on the key, not a current holder) and records its
// fence. An unknown token ("") always passes.
func (s *State) newGrant(tok string) bool {
	if tok == "" {
		return true
	}
	f, ok := core.FenceFromToken(tok)
	if !ok || f <= s.LastFence || s.findToken(tok) >= 0 {
		return false
	}
	s.LastFence = f
	return true
}

// reveal checks the token a wait or a tracked acquire returns for the
// granted slot h, whose token may be unknown, and records it.
func (s *State) reveal(h *Holder, tok string) bool {
	if tok == "" || h.Token != "" {
		return tok == "" || tok == h.Token
	}
	f, ok := core.FenceFromToken(tok)
	if !ok || f <= h.Floor || s.findToken(tok) >= 0 {
		return false
	}
	s.LastFence = max(s.LastFence, f)
	h.Token, h.Floor = tok, 0
	return true
}

// lostOutcomes lists the answers an operation might have had, for an
// operation whose answer was lost. Grants use the unknown token "". The
// error answers of session, resume and bye change nothing, which the
// caller's "never executed" already covers.
func lostOutcomes(op OpKind) []Output {
	if int(op) < len(lost) {
		return lost[op]
	}
	return nil
}

var lost = [...][]Output{
	OpAcquire:        {{Status: "ok"}, {Status: "timeout"}, {Status: "error_lease_expired"}},
	OpRelease:        {{Status: "ok"}, {Status: "error"}},
	OpRenew:          {{Status: "ok"}, {Status: "error"}},
	OpEnqueue:        {{Status: "acquired"}, {Status: "queued"}, {Status: "error_already_enqueued"}},
	OpWait:           {{Status: "ok"}, {Status: "timeout"}, {Status: "error_lease_expired"}, {Status: "error_not_enqueued"}},
	OpSession:        {{Status: "ok"}},
	OpResume:         {{Status: "ok"}},
	OpBye:            {{Status: "ok"}},
	OpExpireSessions: nil,
}

// Step returns every state the key can be in after the operation, or
// none if the answer is impossible from s.
func Step(s State, in Input, out Output) []State {
	if in.Limit > 0 && s.Limit == 0 {
		s.Limit = in.Limit
	}
	if out.Status == StatusLost && (in.Op == OpEvict || in.Op == OpJoin) {
		return append([]State{s}, step(s, in, Output{Status: "ok"})...)
	}
	if out.Status == StatusLost {
		next := []State{s} // the request may never have been executed
		for _, o := range lostOutcomes(in.Op) {
			o.TTL, o.Held, o.Queued = -1, -1, -1 // not checked
			next = append(next, step(s, in, o)...)
		}
		return next
	}
	return step(s, in, out)
}

func ttlOK(out Output, ttl time.Duration) bool { return out.TTL < 0 || out.TTL == secs(ttl) }

func step(s State, in Input, out Output) []State {
	s = s.clone()
	switch in.Op {
	case OpAdvance:
		s.Now += in.D
		return []State{s}
	case OpSweep:
		s.evict()
		return []State{s}
	case OpExpireDue:
		swept := s.clone()
		swept.evict()
		return []State{s, swept}
	case OpExpireSessions:
		s.ownSessions()
		for i := 0; i < len(s.Sessions); {
			if x := s.Sessions[i]; x.Conn == 0 && x.Deadline <= s.Now {
				s.Sessions = slices.Delete(s.Sessions, i, i+1)
				s.release(x.Owner)
				continue
			}
			i++
		}
		return []State{s}
	case OpDisconnect:
		if i := s.attached(in.Conn); i >= 0 {
			s.ownSessions()
			x := &s.Sessions[i]
			x.Conn, x.Deadline = 0, s.Now+x.TTL
			s.park(x.Owner)
		} else {
			s.release(in.Conn)
		}
		return []State{s}
	case OpBye:
		if out.Status != "ok" {
			return nil
		}
		owner := s.owner(in.Conn)
		if i := s.attached(in.Conn); i >= 0 {
			s.Sessions = slices.Delete(cloneSlice(s.Sessions), i, i+1)
		}
		s.release(owner)
		return []State{s}
	case OpSession:
		return s.stepSession(in, out)
	case OpResume:
		return s.stepResume(in, out)

	case OpEvict:
		s.evict()
		return []State{s}

	case OpJoin:
		s.evict()
		owner := s.owner(in.Conn)
		if s.free() {
			s.addHolder(Holder{Owner: owner, Expires: s.Now + in.TTL, TTL: in.TTL, Pend: true, Floor: s.LastFence})
		} else {
			s.Queue = append(s.Queue, Waiter{Owner: owner, TTL: in.TTL, Single: true})
		}
		return []State{s}

	case OpAcquire:
		if in.Tracked && in.Timeout > 0 {
			return s.stepTracked(in, out)
		}
		owner := s.owner(in.Conn)
		if in.Timeout == 0 {
			s.evict() // else the separate OpEvict did it
		}
		switch out.Status {
		case "ok":
			if !s.free() || !ttlOK(out, in.TTL) || !s.newGrant(out.Token) {
				return nil
			}
			s.addHolder(Holder{Token: out.Token, Owner: owner, Expires: s.Now + in.TTL, TTL: in.TTL})
			return []State{s}
		case "timeout":
			if in.Timeout == 0 && s.free() {
				return nil // a try-lock only fails when it must
			}
			return []State{s}
		case "error_lease_expired":
			// Granted, then the lease ran out before the waiter saw it.
			// Nobody knows that token: an anonymous holder of this
			// owner, or already gone.
			next := []State{s}
			if s.free() {
				g := s.clone()
				g.addHolder(Holder{Owner: owner, Expires: s.Now + in.TTL, TTL: in.TTL})
				next = append(next, g)
			}
			return next
		}
		return nil

	case OpRelease:
		i := s.findToken(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 {
				return nil
			}
			s.removeHolder(i)
			s.grant()
			return []State{s}
		case "error":
			if i >= 0 {
				return nil
			}
			return []State{s}
		}
		return nil

	case OpRenew:
		i := s.findToken(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 || s.Holders[i].Expires <= s.Now || !ttlOK(out, in.TTL) {
				return nil
			}
			s.Holders[i].Expires = s.Now + in.TTL
			return []State{s}
		case "error":
			if i >= 0 {
				if s.Holders[i].Expires > s.Now {
					return nil
				}
				s.removeHolder(i) // expired: evicted, never revived
				s.grant()
			}
			return []State{s}
		}
		return nil

	case OpEnqueue:
		owner := s.owner(in.Conn)
		if s.hasRecord(owner) {
			if out.Status == "error_already_enqueued" {
				return []State{s}
			}
			return nil
		}
		s.evict()
		switch out.Status {
		case "acquired":
			if !s.free() || !ttlOK(out, in.TTL) || !s.newGrant(out.Token) {
				return nil
			}
			h := Holder{Token: out.Token, Owner: owner, Expires: s.Now + in.TTL, TTL: in.TTL, Rec: true}
			if out.Token == "" {
				h.Floor = s.LastFence
			}
			s.addHolder(h)
			return []State{s}
		case "queued":
			if s.free() {
				return nil
			}
			s.Queue = append(s.Queue, Waiter{Owner: owner, TTL: in.TTL})
			return []State{s}
		}
		return nil

	case OpWait:
		h, q, d := s.record(s.owner(in.Conn))
		switch {
		case h >= 0:
			hd := s.Holders[h]
			if hd.Expires <= s.Now {
				if out.Status != "error_lease_expired" {
					return nil
				}
				s.removeHolder(h)
				s.grant()
				return []State{s}
			}
			if out.Status != "ok" || !ttlOK(out, hd.TTL) || !s.reveal(&hd, out.Token) {
				return nil
			}
			s.removeHolder(h)
			hd.Rec = false
			hd.Expires = s.Now + hd.TTL
			s.addHolder(hd)
			return []State{s}
		case q >= 0:
			if out.Status != "timeout" {
				return nil
			}
			s.Queue = slices.Delete(s.Queue, q, q+1)
			return []State{s}
		case d >= 0:
			if out.Status != "error_not_enqueued" {
				return nil
			}
			s.Lapsed = slices.Delete(cloneSlice(s.Lapsed), d, d+1)
			return []State{s}
		default:
			if out.Status != "error_not_enqueued" {
				return nil
			}
			return []State{s}
		}
	}
	return nil
}

// stepTracked is the answer of a tracked blocking acquire.
func (s State) stepTracked(in Input, out Output) []State {
	h, q, d := s.pending(s.owner(in.Conn))
	switch out.Status {
	case "ok":
		if h < 0 {
			return nil
		}
		hd := s.Holders[h]
		if hd.Expires <= s.Now || !ttlOK(out, hd.TTL) || !s.reveal(&hd, out.Token) {
			return nil
		}
		s.removeHolder(h)
		hd.Pend = false
		hd.Floor = 0 // an unknown token is never revealed now
		s.addHolder(hd)
		return []State{s}
	case "error_lease_expired":
		switch {
		case h >= 0 && s.Holders[h].Expires <= s.Now:
			s.removeHolder(h)
			s.grant()
		case d >= 0:
			s.Lapsed = slices.Delete(cloneSlice(s.Lapsed), d, d+1)
		default:
			return nil
		}
		return []State{s}
	case "timeout":
		if q < 0 {
			return nil
		}
		s.Queue = slices.Delete(s.Queue, q, q+1)
		return []State{s}
	}
	return nil
}

// stepSession names the connection's session, or sets its TTL when it
// already has one (the same id and secret come back).
func (s State) stepSession(in Input, out Output) []State {
	if out.Status != "ok" || !ttlOK(out, in.TTL) {
		return nil
	}
	s.ownSessions()
	taken := func(skip int) bool {
		return out.SID != "" && slices.ContainsFunc(s.Sessions, func(x Session) bool { return x.Owner != skip && x.ID == out.SID })
	}
	if i := s.attached(in.Conn); i >= 0 {
		x := &s.Sessions[i]
		switch {
		case out.SID == "":
		case x.ID == "":
			if taken(x.Owner) {
				return nil
			}
			x.ID, x.Secret = out.SID, out.Secret
		case x.ID != out.SID || x.Secret != out.Secret:
			return nil
		}
		x.TTL = in.TTL
		return []State{s}
	}
	if taken(-1) {
		return nil
	}
	s.Sessions = append(s.Sessions, Session{ID: out.SID, Secret: out.Secret, Owner: in.Conn, Conn: in.Conn, TTL: in.TTL})
	s.sortSessions()
	return []State{s}
}

// stepResume attaches a detached session to the connection.
func (s State) stepResume(in Input, out Output) []State {
	// Refused on a connection that has a session or holds or waits on
	// anything. Leases that have run out may or may not count.
	held, queued := s.counts(in.Conn)
	stale := s.owns(in.Conn)
	if s.attached(in.Conn) >= 0 || held+queued > 0 || stale && out.Status == "error" {
		if out.Status != "error" {
			return nil
		}
		return []State{s}
	}
	i := slices.IndexFunc(s.Sessions, func(x Session) bool { return x.ID != "" && x.ID == in.SID })
	if i < 0 || s.Sessions[i].Secret != in.Secret {
		if out.Status != "error_session" {
			return nil
		}
		return []State{s}
	}
	s.ownSessions()
	x := &s.Sessions[i]
	if out.Status != "ok" || x.Conn != 0 {
		// A session attached elsewhere is taken over: its connection
		// is closed and detaches first.
		return nil
	}
	held, queued = s.counts(x.Owner)
	if out.Held >= 0 && (out.Held != held || out.Queued != queued) {
		return nil
	}
	x.Conn = in.Conn
	if stale {
		s.release(in.Conn) // the connection's own owner is let go
	}
	return []State{s}
}

// Equal reports whether two states are the same.
func (s State) Equal(o State) bool {
	return s.Now == o.Now && s.Limit == o.Limit && s.LastFence == o.LastFence &&
		slices.Equal(s.Holders, o.Holders) && slices.Equal(s.Queue, o.Queue) &&
		slices.Equal(s.Lapsed, o.Lapsed) && slices.Equal(s.Sessions, o.Sessions)
}

// hashSeed seeds Hash (a state's hash only has to be stable within a
// process).
var hashSeed = maphash.MakeSeed()

// Hash returns a hash consistent with Equal.
func (s State) Hash() uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	maphash.WriteComparable(&h, [3]int64{int64(s.Now), int64(s.Limit), int64(s.LastFence)})
	for _, x := range s.Holders {
		maphash.WriteComparable(&h, x)
	}
	h.WriteByte('|')
	for _, w := range s.Queue {
		maphash.WriteComparable(&h, w)
	}
	h.WriteByte('|')
	for _, l := range s.Lapsed {
		maphash.WriteComparable(&h, l)
	}
	h.WriteByte('|')
	for _, x := range s.Sessions {
		maphash.WriteComparable(&h, x)
	}
	return h.Sum64()
}

// String describes the state for porcupine's visualisation and errors.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%v", s.Now)
	for _, h := range s.Holders {
		tok := shortToken(h.Token)
		if tok == "" {
			tok = "?"
		}
		fmt.Fprintf(&b, " H[o%d %s exp=%v", h.Owner, tok, h.Expires)
		if h.Rec {
			b.WriteString(" rec")
		}
		if h.Pend {
			b.WriteString(" pending")
		}
		b.WriteString("]")
	}
	for _, w := range s.Queue {
		if w.Single {
			fmt.Fprintf(&b, " Q[o%d l]", w.Owner)
		} else {
			fmt.Fprintf(&b, " Q[o%d]", w.Owner)
		}
	}
	for _, l := range s.Lapsed {
		fmt.Fprintf(&b, " lapsed[o%d parked=%t]", l.Owner, l.Parked)
	}
	for _, x := range s.Sessions {
		fmt.Fprintf(&b, " S[%s o%d", shortSID(x.ID), x.Owner)
		if x.Conn != 0 {
			fmt.Fprintf(&b, " on c%d]", x.Conn)
		} else {
			fmt.Fprintf(&b, " detached until %v]", x.Deadline)
		}
	}
	return b.String()
}

func shortSID(sid string) string {
	if sid == "" {
		return "?"
	}
	return sid[:min(6, len(sid))]
}

// Describe describes one operation.
func Describe(in Input, out Output) string {
	switch in.Op {
	case OpAdvance:
		return fmt.Sprintf("advance %v", in.D)
	case OpTick:
		return fmt.Sprintf("tick %v..%v", in.At, in.Next)
	case OpSweep, OpExpireDue, OpExpireSessions:
		return in.Op.String()
	case OpEvict, OpJoin:
		return fmt.Sprintf("c%d %s(arrival of a blocking acquire) %s ttl=%v -> %s", in.Conn, in.Op, in.Key, in.TTL, out.Status)
	case OpDisconnect:
		return fmt.Sprintf("disconnect c%d", in.Conn)
	case OpSession:
		return fmt.Sprintf("c%d session ttl=%v -> %s %s %d", in.Conn, in.TTL, out.Status, shortSID(out.SID), out.TTL)
	case OpResume:
		return fmt.Sprintf("c%d resume %s %.6s -> %s %d %d", in.Conn, shortSID(in.SID), in.Secret, out.Status, out.Held, out.Queued)
	case OpBye:
		return fmt.Sprintf("c%d bye -> %s", in.Conn, out.Status)
	}
	tok := shortToken(out.Token)
	arg := ""
	if in.Token != "" {
		arg = " " + shortToken(in.Token)
	}
	return fmt.Sprintf("c%d %s %s%s t=%d ttl=%v -> %s %s", in.Conn, in.Op, in.Key, arg, in.Timeout, in.TTL, out.Status, tok)
}

// Partition splits a history by key. Clock operations go to every key;
// a disconnect goes to every key its connection used.
func Partition(history []porcupine.Operation) [][]porcupine.Operation {
	keyOrder := []string{}
	byKey := map[string][]porcupine.Operation{}
	connKeys := map[int]map[string]bool{}
	for _, op := range history {
		in := op.Input.(Input)
		if in.Key == "" {
			continue
		}
		if _, ok := byKey[in.Key]; !ok {
			keyOrder = append(keyOrder, in.Key)
			byKey[in.Key] = nil
		}
		byKey[in.Key] = append(byKey[in.Key], op)
		if connKeys[in.Conn] == nil {
			connKeys[in.Conn] = map[string]bool{}
		}
		connKeys[in.Conn][in.Key] = true
	}
	for _, op := range history {
		in := op.Input.(Input)
		if in.Key != "" {
			continue
		}
		for _, k := range keyOrder {
			if in.Op == OpDisconnect && !connKeys[in.Conn][k] {
				continue
			}
			byKey[k] = append(byKey[k], op)
		}
	}
	out := make([][]porcupine.Operation, 0, len(keyOrder))
	for _, k := range keyOrder {
		out = append(out, byKey[k])
	}
	return out
}

// Model returns the porcupine model of the lock and semaphore service.
func Model() porcupine.Model {
	return nondeterministic(State{}, Step, Describe)
}

// modelState is what nondeterministic needs of a model's state.
type modelState[S any] interface {
	Equal(S) bool
	Hash() uint64
	String() string
}

// nondeterministic builds a porcupine model from a state machine whose
// step may lead to several states.
func nondeterministic[S modelState[S]](init S, step func(S, Input, Output) []S, describe func(Input, Output) string) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: Partition,
		Init:      func() []interface{} { return []interface{}{init} },
		Step: func(state, input, output interface{}) []interface{} {
			next := step(state.(S), input.(Input), output.(Output))
			out := make([]interface{}, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Equal:             func(a, b interface{}) bool { return a.(S).Equal(b.(S)) },
		Hash:              func(s interface{}) uint64 { return s.(S).Hash() },
		DescribeOperation: func(input, output interface{}) string { return describe(input.(Input), output.(Output)) },
		DescribeState:     func(s interface{}) string { return s.(S).String() },
	}
	return nm.ToModel()
}

// shortToken abbreviates a token to the low digits of its fence, which
// tell grants apart (the high digits are shared by a whole run).
func shortToken(tok string) string {
	if f, ok := core.FenceFromToken(tok); ok {
		return fmt.Sprintf("#%d", f%1000000)
	}
	return tok
}
