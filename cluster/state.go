package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dflockd/dflockd/core"
)

// MaxKeyLen is the longest key a command may name (the protocol's line cap).
const MaxKeyLen = 256

// SessionID names a session: 8 bytes, shown as 16 lower-case hex characters.
type SessionID [8]byte

// String returns the id's hex text.
func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// Secret is a session's secret: 16 bytes, shown as 32 lower-case hex characters.
type Secret [16]byte

// String returns the secret's hex text.
func (s Secret) String() string { return hex.EncodeToString(s[:]) }

// Seed is the 16 bytes a leader draws for a command that may grant; token
// salts are derived from it, so replicas agree and clients cannot predict them.
type Seed [16]byte

// Mode says what Acquire does when no slot is free at once.
type Mode uint8

const (
	// Try answers Timeout when no slot is free (a try-lock, `l k 0`).
	Try Mode = iota
	// Queue joins the FIFO (a blocking `l`/`sl`).
	Queue
	// Enqueue joins the FIFO as a two-phase place (`e`/`se`), collected
	// later by `w`/`sw`.
	Enqueue
)

// String returns "try", "queue" or "enqueue".
func (m Mode) String() string {
	switch m {
	case Try:
		return "try"
	case Queue:
		return "queue"
	case Enqueue:
		return "enqueue"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Policy is the part of the configuration that changes what apply does.
// It is replicated (SetPolicy), never read from a node's own flags. Zero
// fields take the same defaults as core.Options.
type Policy struct {
	// DefaultTTL is the lease of an acquire that names none (0 = core.DefaultLeaseTTL).
	DefaultTTL time.Duration
	// MaxKeys caps keys across both namespaces (0 = core.DefaultMaxKeys).
	MaxKeys int
	// MaxWaiters caps queue places per key (0 = unlimited).
	MaxWaiters int
	// MaxSessions caps named sessions (0 = unlimited).
	MaxSessions int
	// KeepOnDisconnect leaves a closed session's holds in place until
	// evicted (their session becomes the zero id).
	KeepOnDisconnect bool
}

func (p Policy) defaultTTL() time.Duration {
	if p.DefaultTTL <= 0 {
		return core.DefaultLeaseTTL
	}
	return p.DefaultTTL
}

func (p Policy) maxKeys() int {
	if p.MaxKeys <= 0 {
		return core.DefaultMaxKeys
	}
	return p.MaxKeys
}

// Status is the outcome of applying a command.
type Status uint8

// Statuses. The error statuses map onto core's sentinel errors (Result.Err).
const (
	OK              Status = iota // done; nothing more to say
	Granted                       // a slot: Result.Token, Fence, TTL
	Queued                        // a queue place: Result.Place
	Timeout                       // try-lock found no free slot
	Canceled                      // a place left the queue, or its raced grant was passed on
	NoSession                     // the session does not exist
	MaxKeys                       // creating the key would exceed Policy.MaxKeys
	MaxWaiters                    // the key's queue is full
	LimitMismatch                 // the key exists with another limit
	AlreadyEnqueued               // the session has a two-phase place or uncollected grant for the key
	NotHolder                     // the token holds no slot of the key
	NotEnqueued                   // no such place (any more), or nothing to collect
	MaxSessions                   // naming one more session would exceed Policy.MaxSessions
	SessionExists                 // the session id is taken, with another secret
	PlaceInUse                    // the place id names a live place or grant already
	Undecodable                   // the log entry could not be decoded (FSM only)
)

var statusNames = [...]string{"ok", "granted", "queued", "timeout", "canceled", "no_session", "max_keys",
	"max_waiters", "limit_mismatch", "already_enqueued", "not_holder", "not_enqueued", "max_sessions",
	"session_exists", "place_in_use", "undecodable"}

// String returns the status's name.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Errors for the statuses core has no sentinel for.
var (
	ErrSessionExists = errors.New("cluster: session id in use")
	ErrPlaceInUse    = errors.New("cluster: place id in use")
	ErrUndecodable   = errors.New("cluster: undecodable log entry")
)

// Result is what applying one command answers.
type Result struct {
	// Status is the outcome; the fields below are set only where it says.
	Status Status
	// Token, Fence and TTL describe the slot of a Granted result.
	Token core.Token
	Fence uint64
	TTL   time.Duration
	// Place is the place of a Queued result.
	Place uint64
	// Count is how many holders an Evict removed.
	Count int
}

// Err returns nil for OK, Granted, Queued and Canceled, else the matching
// error (core's sentinels where core has one).
func (r Result) Err() error {
	switch r.Status {
	case OK, Granted, Queued:
		return nil
	case Canceled:
		return core.ErrCanceled
	case Timeout:
		return core.ErrTimeout
	case NoSession:
		return core.ErrSession
	case MaxKeys:
		return core.ErrMaxKeys
	case MaxWaiters:
		return core.ErrMaxWaiters
	case LimitMismatch:
		return core.ErrLimitMismatch
	case AlreadyEnqueued:
		return core.ErrAlreadyEnqueued
	case NotHolder:
		return core.ErrNotHolder
	case NotEnqueued:
		return core.ErrNotEnqueued
	case MaxSessions:
		return core.ErrMaxSessions
	case SessionExists:
		return ErrSessionExists
	case PlaceInUse:
		return ErrPlaceInUse
	}
	return ErrUndecodable
}

// Grant is one slot handed out while applying a command, reported to the
// Observer so the leader can answer the waiting connection.
type Grant struct {
	Place   uint64
	Session SessionID
	Kind    core.Kind
	Key     string // the state's own copy: safe to keep
	Token   core.Token
	Fence   uint64
	TTL     time.Duration
	// TwoPhase: the grant waits for a Collect (`w`) before it is the
	// session's own.
	TwoPhase bool
}

// Observer is told of every grant, in the order they are made, while the
// state's write lock is held: it must not block or call the State.
type Observer func(Grant)

// session is a replicated session. What it holds and waits for is found
// from the keys; refs is a derived index of those keys (not snapshotted).
type session struct {
	id       SessionID
	secret   Secret
	ttl      time.Duration
	named    bool
	identity string
	refs     map[keyRef]int32 // holders + places of this session per key
}

type keyRef struct {
	kind core.Kind
	name string
}

// holder is one granted slot.
type holder struct {
	token   core.Token
	session SessionID // zero once its session closed with KeepOnDisconnect
	ttl     time.Duration
	since   int64  // leader unix nanos at the grant
	place   uint64 // the place (or enqueue) it was granted to; 0 for an immediate plain acquire
	pending bool   // a two-phase grant not yet collected by `w`
}

// place is one queue place.
type place struct {
	id       uint64
	session  SessionID
	ttl      time.Duration
	twoPhase bool
	since    int64 // leader unix nanos at the enqueue
}

// key is one resource. A key with no holders and no places is deleted at
// once (unlike core, which keeps an idle key, and its limit, until GC).
type key struct {
	name    string
	kind    core.Kind
	limit   int
	holders []holder // in grant order
	queue   []place  // FIFO, head first
}

func (k *key) idle() bool { return len(k.holders) == 0 && len(k.queue) == 0 }

// State is the replicated state machine. Apply is deterministic: it reads
// no clock and no random source, and iterates no map in an order that
// could show. Queries take a read lock and may run beside Apply.
type State struct {
	mu       sync.RWMutex
	fence    uint64
	sessions map[SessionID]*session
	named    int // sessions with named set
	keys     [2]map[string]*key
	places   map[uint64]struct{} // live place ids: queued places and holders' origins (derived)
	policy   Policy
	members  map[string][]string
	observer Observer
}

// NewState returns an empty state: fence 0, default policy, no members.
func NewState() *State {
	s := &State{}
	s.reset()
	return s
}

func (s *State) reset() {
	s.fence = 0
	s.sessions = make(map[SessionID]*session)
	s.named = 0
	s.keys = [2]map[string]*key{make(map[string]*key), make(map[string]*key)}
	s.places = make(map[uint64]struct{})
	s.policy = Policy{}
	s.members = make(map[string][]string)
}

// SetObserver installs the grant observer (nil = none): the leader sets
// one, followers run without.
func (s *State) SetObserver(o Observer) {
	s.mu.Lock()
	s.observer = o
	s.mu.Unlock()
}

// Apply applies one command and returns its result.
func (s *State) Apply(c Command) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(c)
}

// apply runs one command; s.mu is held for writing.
func (s *State) apply(c Command) Result {
	switch c := c.(type) {
	case *OpenSession:
		return s.openSession(c)
	case *CloseSession:
		return s.closeSession(c)
	case *Acquire:
		return s.acquire(c)
	case *Release:
		return s.release(c)
	case *Cancel:
		return s.cancel(c)
	case *Collect:
		return s.collect(c)
	case *Park:
		return s.park(c)
	case *Evict:
		return s.evict(c)
	case *Retime:
		k := s.keys[c.Kind][c.Key]
		if k == nil {
			return Result{Status: NotHolder}
		}
		i := findToken(k, c.Token)
		if i < 0 {
			return Result{Status: NotHolder}
		}
		k.holders[i].ttl = c.TTL
		return Result{Status: OK, TTL: c.TTL}
	case *SetPolicy:
		s.policy = c.Policy
		return Result{Status: OK}
	case *SetMember:
		if len(c.Endpoints) == 0 {
			delete(s.members, c.Node)
		} else {
			s.members[strings.Clone(c.Node)] = cloneStrings(c.Endpoints)
		}
		return Result{Status: OK}
	}
	return Result{Status: Undecodable}
}

func cloneStrings(in []string) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = strings.Clone(v)
	}
	return out
}

// ---- tokens ----

// token takes the next fence value and makes its token: 16 hex characters
// of the big-endian fence, then 16 of salt, the first 8 bytes of
// SHA-256(seed || fence).
func (s *State) token(seed *Seed) (core.Token, uint64) {
	s.fence++
	return makeToken(s.fence, seed), s.fence
}

func makeToken(fence uint64, seed *Seed) (t core.Token) {
	var buf [24]byte
	copy(buf[:16], seed[:])
	binary.BigEndian.PutUint64(buf[16:], fence)
	sum := sha256.Sum256(buf[:])
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], fence)
	copy(raw[8:], sum[:8])
	hex.Encode(t[:], raw[:])
	return t
}

// ---- keys and indexes ----

func (s *State) ref(id SessionID, kr keyRef, d int32) {
	ss := s.sessions[id]
	if ss == nil {
		return
	}
	if ss.refs == nil {
		ss.refs = make(map[keyRef]int32)
	}
	if n := ss.refs[kr] + d; n > 0 {
		ss.refs[kr] = n
	} else {
		delete(ss.refs, kr)
	}
}

func (k *key) ref() keyRef { return keyRef{k.kind, k.name} }

// dropIfIdle deletes an idle key.
func (s *State) dropIfIdle(k *key) {
	if k.idle() {
		delete(s.keys[k.kind], k.name)
	}
}

func (s *State) nkeys() int { return len(s.keys[0]) + len(s.keys[1]) }

// removeHolder drops holder i of k, keeping the others' order.
func (s *State) removeHolder(k *key, i int) holder {
	h := k.holders[i]
	k.holders = slices.Delete(k.holders, i, i+1)
	if h.place != 0 {
		delete(s.places, h.place)
	}
	s.ref(h.session, k.ref(), -1)
	return h
}

// removePlace drops queue place i of k.
func (s *State) removePlace(k *key, i int) place {
	p := k.queue[i]
	k.queue = slices.Delete(k.queue, i, i+1)
	delete(s.places, p.id)
	s.ref(p.session, k.ref(), -1)
	return p
}

// grant hands free slots of k to its queue head(s), in FIFO order.
func (s *State) grant(k *key, at int64, seed *Seed) {
	for len(k.holders) < k.limit && len(k.queue) > 0 {
		p := k.queue[0]
		k.queue[0] = place{}
		k.queue = k.queue[1:]
		if len(k.queue) == 0 {
			k.queue = nil
		}
		tok, f := s.token(seed)
		// The place id moves from the queue to the holder: s.places and
		// the session's refs are unchanged.
		k.holders = append(k.holders, holder{token: tok, session: p.session, ttl: p.ttl, since: at, place: p.id, pending: p.twoPhase})
		s.notify(Grant{Place: p.id, Session: p.session, Kind: k.kind, Key: k.name, Token: tok, Fence: f, TTL: p.ttl, TwoPhase: p.twoPhase})
	}
}

func (s *State) notify(g Grant) {
	if s.observer != nil {
		s.observer(g)
	}
}

func findToken(k *key, t core.Token) int {
	for i := range k.holders {
		if k.holders[i].token == t {
			return i
		}
	}
	return -1
}

func findPlace(k *key, id uint64) int {
	for i := range k.queue {
		if k.queue[i].id == id {
			return i
		}
	}
	return -1
}

func findOrigin(k *key, id uint64) int {
	for i := range k.holders {
		if k.holders[i].place == id {
			return i
		}
	}
	return -1
}

// record finds sid's two-phase record on k: a queued two-phase place
// (place >= 0) or a pending holder (holder >= 0).
func record(k *key, sid SessionID) (pl, ho int) {
	for i := range k.queue {
		if p := &k.queue[i]; p.twoPhase && p.session == sid {
			return i, -1
		}
	}
	for i := range k.holders {
		if h := &k.holders[i]; h.pending && h.session == sid {
			return -1, i
		}
	}
	return -1, -1
}

func granted(h *holder) Result {
	f, _ := core.FenceFromToken(h.token.String())
	return Result{Status: Granted, Token: h.token, Fence: f, TTL: h.ttl}
}

// ---- commands ----

func (s *State) openSession(c *OpenSession) Result {
	if ss := s.sessions[c.ID]; ss != nil {
		if ss.secret != c.Secret {
			return Result{Status: SessionExists}
		}
		// The same session again: `session` on a connection that has one
		// (its implicit session is named, or a named one gets a new TTL).
		if c.Named && !ss.named {
			if max := s.policy.MaxSessions; max > 0 && s.named >= max {
				return Result{Status: MaxSessions}
			}
			s.named++
			ss.named = true
		}
		ss.ttl = c.TTL
		if c.Identity != ss.identity {
			ss.identity = strings.Clone(c.Identity)
		}
		return Result{Status: OK}
	}
	if c.Named {
		if max := s.policy.MaxSessions; max > 0 && s.named >= max {
			return Result{Status: MaxSessions}
		}
		s.named++
	}
	s.sessions[c.ID] = &session{id: c.ID, secret: c.Secret, ttl: c.TTL, named: c.Named, identity: strings.Clone(c.Identity)}
	return Result{Status: OK}
}

// sortedRefs returns a session's keys in a fixed order (kind, then name),
// so that grants made while closing it take fences in the same order on
// every replica.
func sortedRefs(ss *session) []keyRef {
	refs := make([]keyRef, 0, len(ss.refs))
	for kr := range ss.refs {
		refs = append(refs, kr)
	}
	slices.SortFunc(refs, func(a, b keyRef) int {
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return strings.Compare(a.name, b.name)
	})
	return refs
}

func (s *State) closeSession(c *CloseSession) Result {
	ss := s.sessions[c.ID]
	if ss == nil {
		return Result{Status: NoSession}
	}
	keep := s.policy.KeepOnDisconnect
	for _, kr := range sortedRefs(ss) {
		k := s.keys[kr.kind][kr.name]
		if k == nil {
			continue // cannot happen: refs follow the keys
		}
		for i := 0; i < len(k.queue); {
			if k.queue[i].session == c.ID {
				s.removePlace(k, i)
				continue
			}
			i++
		}
		for i := 0; i < len(k.holders); {
			h := &k.holders[i]
			if h.session != c.ID {
				i++
				continue
			}
			if keep {
				h.session = SessionID{}
				h.pending = false
				i++
				continue
			}
			s.removeHolder(k, i)
		}
		s.grant(k, c.At, &c.Seed)
		s.dropIfIdle(k)
	}
	if ss.named {
		s.named--
	}
	delete(s.sessions, c.ID)
	return Result{Status: OK}
}

func (s *State) acquire(c *Acquire) Result {
	if s.sessions[c.Session] == nil {
		return Result{Status: NoSession}
	}
	if _, used := s.places[c.Place]; used || c.Place == 0 {
		return Result{Status: PlaceInUse}
	}
	limit := c.Limit
	if c.Kind == core.KindLock || limit < 1 {
		limit = 1
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = s.policy.defaultTTL()
	}
	m := s.keys[c.Kind]
	k := m[c.Key]
	if k != nil && c.Mode == Enqueue {
		if pl, ho := record(k, c.Session); pl >= 0 || ho >= 0 {
			return Result{Status: AlreadyEnqueued}
		}
	}
	if k == nil {
		if s.nkeys() >= s.policy.maxKeys() {
			return Result{Status: MaxKeys}
		}
		k = &key{name: strings.Clone(c.Key), kind: c.Kind, limit: limit}
	} else if k.limit != limit {
		return Result{Status: LimitMismatch}
	}
	if len(k.holders) < k.limit && len(k.queue) == 0 {
		m[k.name] = k
		tok, f := s.token(&c.Seed)
		two := c.Mode == Enqueue
		k.holders = append(k.holders, holder{token: tok, session: c.Session, ttl: ttl, since: c.At, place: c.Place, pending: two})
		s.places[c.Place] = struct{}{}
		s.ref(c.Session, k.ref(), 1)
		s.notify(Grant{Place: c.Place, Session: c.Session, Kind: k.kind, Key: k.name, Token: tok, Fence: f, TTL: ttl, TwoPhase: two})
		return Result{Status: Granted, Token: tok, Fence: f, TTL: ttl}
	}
	if max := s.policy.MaxWaiters; max > 0 && len(k.queue) >= max {
		return Result{Status: MaxWaiters}
	}
	if c.Mode == Try {
		return Result{Status: Timeout}
	}
	m[k.name] = k
	k.queue = append(k.queue, place{id: c.Place, session: c.Session, ttl: ttl, twoPhase: c.Mode == Enqueue, since: c.At})
	s.places[c.Place] = struct{}{}
	s.ref(c.Session, k.ref(), 1)
	return Result{Status: Queued, Place: c.Place}
}

func (s *State) release(c *Release) Result {
	k := s.keys[c.Kind][c.Key]
	if k == nil {
		return Result{Status: NotHolder}
	}
	i := findToken(k, c.Token)
	if i < 0 {
		return Result{Status: NotHolder}
	}
	s.removeHolder(k, i)
	s.grant(k, c.At, &c.Seed)
	s.dropIfIdle(k)
	return Result{Status: OK}
}

func (s *State) cancel(c *Cancel) Result {
	k := s.keys[c.Kind][c.Key]
	if k == nil {
		return Result{Status: NotEnqueued}
	}
	if i := findPlace(k, c.Place); i >= 0 {
		s.removePlace(k, i)
		s.dropIfIdle(k)
		return Result{Status: Canceled}
	}
	i := findOrigin(k, c.Place)
	if i < 0 {
		return Result{Status: NotEnqueued}
	}
	if c.KeepGrant {
		// A timed-out wait that a grant beat: the grant is the caller's,
		// collected now as by `w`.
		h := &k.holders[i]
		h.pending = false
		return granted(h)
	}
	s.removeHolder(k, i)
	s.grant(k, c.At, &c.Seed)
	s.dropIfIdle(k)
	return Result{Status: Canceled}
}

func (s *State) collect(c *Collect) Result {
	k := s.keys[c.Kind][c.Key]
	if k == nil {
		return Result{Status: NotEnqueued}
	}
	pl, ho := record(k, c.Session)
	switch {
	case pl >= 0:
		return Result{Status: Queued, Place: k.queue[pl].id}
	case ho >= 0:
		h := &k.holders[ho]
		h.pending = false
		return granted(h)
	}
	return Result{Status: NotEnqueued}
}

func (s *State) park(c *Park) Result {
	k := s.keys[c.Kind][c.Key]
	if k == nil {
		return Result{Status: NotEnqueued}
	}
	pi := findPlace(k, c.Place)
	hi := -1
	var sid SessionID
	switch {
	case pi >= 0:
		if k.queue[pi].twoPhase {
			return Result{Status: Queued, Place: c.Place}
		}
		sid = k.queue[pi].session
	default:
		if hi = findOrigin(k, c.Place); hi < 0 {
			return Result{Status: NotEnqueued}
		}
		if k.holders[hi].pending {
			return granted(&k.holders[hi])
		}
		sid = k.holders[hi].session
		if sid == (SessionID{}) {
			return Result{Status: NotEnqueued} // kept after its session closed
		}
	}
	if pl, ho := record(k, sid); pl >= 0 || ho >= 0 {
		// The session already has a record for the key: the place is
		// given up as an abandoned wait would be.
		return s.cancel(&Cancel{At: c.At, Seed: c.Seed, Kind: c.Kind, Key: c.Key, Place: c.Place})
	}
	if pi >= 0 {
		k.queue[pi].twoPhase = true
		return Result{Status: Queued, Place: c.Place}
	}
	k.holders[hi].pending = true
	return granted(&k.holders[hi])
}

func (s *State) evict(c *Evict) Result {
	k := s.keys[c.Kind][c.Key]
	if k == nil {
		return Result{Status: OK}
	}
	n := 0
	for _, t := range c.Tokens {
		if i := findToken(k, t); i >= 0 {
			s.removeHolder(k, i)
			n++
		}
	}
	if n > 0 {
		s.grant(k, c.At, &c.Seed)
		s.dropIfIdle(k)
	}
	return Result{Status: OK, Count: n}
}
