package cluster

import (
	"slices"
	"strings"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Read-only queries for the leader. Each takes the read lock and returns
// copies.

// HolderInfo describes one granted slot.
type HolderInfo struct {
	Kind    core.Kind
	Key     string
	Token   core.Token
	Fence   uint64
	Session SessionID // zero: kept after its session closed (KeepOnDisconnect)
	TTL     time.Duration
	Since   int64  // leader unix nanos of the grant
	Place   uint64 // the place it was granted to, 0 for an immediate plain acquire
	Pending bool   // a two-phase grant not yet collected
}

// PlaceInfo describes one queue place.
type PlaceInfo struct {
	Kind     core.Kind
	Key      string
	Place    uint64
	Session  SessionID
	TTL      time.Duration
	TwoPhase bool
	Since    int64 // leader unix nanos of the enqueue
}

// KeyInfo describes one key: its holders in grant order, its queue head first.
type KeyInfo struct {
	Kind    core.Kind
	Key     string
	Limit   int
	Holders []HolderInfo
	Queue   []PlaceInfo
}

// SessionInfo describes one session. Held counts its slots (uncollected
// two-phase grants included), Queued its places still waiting: what
// `resume` answers.
type SessionInfo struct {
	ID       SessionID
	Secret   Secret
	TTL      time.Duration
	Named    bool
	Identity string
	Held     int
	Queued   int
}

// Member is one node's client endpoints.
type Member struct {
	Node      string
	Endpoints []string
}

// Stats are counts over the whole state.
type Stats struct {
	Fence         uint64
	Locks         int // keys in the lock namespace
	Semaphores    int // keys in the semaphore namespace
	Holders       int
	Waiters       int
	Sessions      int
	NamedSessions int
}

func holderInfo(k *key, h *holder) HolderInfo {
	f, _ := core.FenceFromToken(h.token.String())
	return HolderInfo{Kind: k.kind, Key: k.name, Token: h.token, Fence: f, Session: h.session,
		TTL: h.ttl, Since: h.since, Place: h.place, Pending: h.pending}
}

func placeInfo(k *key, p *place) PlaceInfo {
	return PlaceInfo{Kind: k.kind, Key: k.name, Place: p.id, Session: p.session, TTL: p.ttl,
		TwoPhase: p.twoPhase, Since: p.since}
}

// Fence returns the last fence value handed out.
func (s *State) Fence() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fence
}

// Policy returns the replicated policy.
func (s *State) Policy() Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policy
}

// Members returns every member, by node id.
func (s *State) Members() []Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Member, 0, len(s.members))
	for n, eps := range s.members {
		out = append(out, Member{Node: n, Endpoints: slices.Clone(eps)})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Holder returns the holder of token on key, if it holds (renew validation).
func (s *State) Holder(kind core.Kind, name string, token core.Token) (HolderInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if int(kind) >= len(s.keys) {
		return HolderInfo{}, false
	}
	k := s.keys[kind][name]
	if k == nil {
		return HolderInfo{}, false
	}
	i := findToken(k, token)
	if i < 0 {
		return HolderInfo{}, false
	}
	return holderInfo(k, &k.holders[i]), true
}

// Record returns sid's two-phase record for key, what `w` collects: a
// queued two-phase place (the PlaceInfo) or an uncollected grant (the
// HolderInfo); ok is false when there is neither.
func (s *State) Record(sid SessionID, kind core.Kind, name string) (p *PlaceInfo, h *HolderInfo, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if int(kind) >= len(s.keys) {
		return nil, nil, false
	}
	k := s.keys[kind][name]
	if k == nil {
		return nil, nil, false
	}
	pl, ho := record(k, sid)
	switch {
	case pl >= 0:
		pi := placeInfo(k, &k.queue[pl])
		return &pi, nil, true
	case ho >= 0:
		hi := holderInfo(k, &k.holders[ho])
		return nil, &hi, true
	}
	return nil, nil, false
}

func (s *State) sessionInfo(ss *session) SessionInfo {
	si := SessionInfo{ID: ss.id, Secret: ss.secret, TTL: ss.ttl, Named: ss.named, Identity: ss.identity}
	for kr := range ss.refs {
		k := s.keys[kr.kind][kr.name]
		for i := range k.holders {
			if k.holders[i].session == ss.id {
				si.Held++
			}
		}
		for i := range k.queue {
			if k.queue[i].session == ss.id {
				si.Queued++
			}
		}
	}
	return si
}

// Session returns one session with its counts (for `resume`; the caller
// compares the secret in constant time).
func (s *State) Session(id SessionID) (SessionInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := s.sessions[id]
	if ss == nil {
		return SessionInfo{}, false
	}
	return s.sessionInfo(ss), true
}

// Sessions returns every session, by id (to arm session timers after a
// barrier).
func (s *State) Sessions() []SessionInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, s.sessionInfo(ss))
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(string(a.ID[:]), string(b.ID[:])) })
	return out
}

// Holders returns every holder, by kind, key and grant order (to arm
// lease timers after a barrier).
func (s *State) Holders() []HolderInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []HolderInfo
	for kind := range s.keys {
		for _, name := range sortedNames(s.keys[kind]) {
			k := s.keys[kind][name]
			for i := range k.holders {
				out = append(out, holderInfo(k, &k.holders[i]))
			}
		}
	}
	return out
}

func sortedNames(m map[string]*key) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Inspect describes one key; ok is false when it does not exist (an idle
// key does not: it is deleted at once).
func (s *State) Inspect(kind core.Kind, name string) (KeyInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if int(kind) >= len(s.keys) {
		return KeyInfo{}, false
	}
	k := s.keys[kind][name]
	if k == nil {
		return KeyInfo{}, false
	}
	return keyInfo(k), true
}

func keyInfo(k *key) KeyInfo {
	ki := KeyInfo{Kind: k.kind, Key: k.name, Limit: k.limit,
		Holders: make([]HolderInfo, len(k.holders)), Queue: make([]PlaceInfo, len(k.queue))}
	for i := range k.holders {
		ki.Holders[i] = holderInfo(k, &k.holders[i])
	}
	for i := range k.queue {
		ki.Queue[i] = placeInfo(k, &k.queue[i])
	}
	return ki
}

// Keys describes every key of one namespace, by name.
func (s *State) Keys(kind core.Kind) []KeyInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if int(kind) >= len(s.keys) {
		return nil
	}
	m := s.keys[kind]
	out := make([]KeyInfo, 0, len(m))
	for _, name := range sortedNames(m) {
		out = append(out, keyInfo(m[name]))
	}
	return out
}

// Stats counts keys, holders, waiters and sessions.
func (s *State) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{Fence: s.fence, Locks: len(s.keys[core.KindLock]), Semaphores: len(s.keys[core.KindSemaphore]),
		Sessions: len(s.sessions), NamedSessions: s.named}
	for _, m := range s.keys {
		for _, k := range m {
			st.Holders += len(k.holders)
			st.Waiters += len(k.queue)
		}
	}
	return st
}
