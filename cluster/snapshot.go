package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Snapshot format (integers uvarint, minimal; strings length-prefixed):
//
//	version(1) fence policy
//	members:  count, then per node in byte order: node, count, endpoints
//	sessions: count, then per session in id order: id(8) secret(16) ttl named identity
//	per kind (lock, semaphore): count, then per key in byte order:
//	  name limit
//	  holders: count, then token(16) session(8) ttl since place pending
//	  queue:   count, then place session(8) ttl twoPhase since
//
// Every map is written sorted, so equal states give equal bytes.
const snapshotVersion = 1

// Snapshot returns the state's bytes, copied under the read lock.
func (s *State) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.appendSnapshot(nil)
}

func (s *State) appendSnapshot(dst []byte) []byte {
	dst = append(dst, snapshotVersion)
	dst = binary.AppendUvarint(dst, s.fence)
	dst = appendPolicy(dst, &s.policy)

	nodes := make([]string, 0, len(s.members))
	for n := range s.members {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	dst = binary.AppendUvarint(dst, uint64(len(nodes)))
	for _, n := range nodes {
		dst = appendString(dst, n)
		eps := s.members[n]
		dst = binary.AppendUvarint(dst, uint64(len(eps)))
		for _, e := range eps {
			dst = appendString(dst, e)
		}
	}

	ids := make([]SessionID, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b SessionID) int { return bytes.Compare(a[:], b[:]) })
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		ss := s.sessions[id]
		dst = append(dst, id[:]...)
		dst = append(dst, ss.secret[:]...)
		dst = appendInt(dst, int64(ss.ttl))
		dst = appendBool(dst, ss.named)
		dst = appendString(dst, ss.identity)
	}

	for kind := range s.keys {
		m := s.keys[kind]
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		slices.Sort(names)
		dst = binary.AppendUvarint(dst, uint64(len(names)))
		for _, n := range names {
			k := m[n]
			dst = appendString(dst, n)
			dst = binary.AppendUvarint(dst, uint64(k.limit))
			dst = binary.AppendUvarint(dst, uint64(len(k.holders)))
			for i := range k.holders {
				h := &k.holders[i]
				dst = appendToken(dst, h.token)
				dst = append(dst, h.session[:]...)
				dst = appendInt(dst, int64(h.ttl))
				dst = appendInt(dst, h.since)
				dst = binary.AppendUvarint(dst, h.place)
				dst = appendBool(dst, h.pending)
			}
			dst = binary.AppendUvarint(dst, uint64(len(k.queue)))
			for i := range k.queue {
				p := &k.queue[i]
				dst = binary.AppendUvarint(dst, p.id)
				dst = append(dst, p.session[:]...)
				dst = appendInt(dst, int64(p.ttl))
				dst = appendBool(dst, p.twoPhase)
				dst = appendInt(dst, p.since)
			}
		}
	}
	return dst
}

// Restore replaces the state with the snapshot b, after checking it
// whole: on error the state is unchanged. The observer is kept.
func (s *State) Restore(b []byte) error {
	n, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fence, s.sessions, s.named, s.keys, s.places, s.policy, s.members =
		n.fence, n.sessions, n.named, n.keys, n.places, n.policy, n.members
	return nil
}

// decodeSnapshot parses and validates a snapshot into a fresh State,
// rebuilding the derived indexes.
func decodeSnapshot(b []byte) (*State, error) {
	s := NewState()
	r := reader{b: b, base: ErrSnapshot}
	if v := r.byte(); r.err == nil && v != snapshotVersion {
		return nil, fmt.Errorf("%w: unknown snapshot version %d", ErrSnapshot, v)
	}
	s.fence = r.uint(math.MaxUint64)
	s.policy = r.policy()
	// Counts are bounded by what the rest of the input could hold, so a
	// corrupt count cannot make Restore allocate without limit.
	left := func(per int) uint64 { return uint64(len(r.b)-r.off) / uint64(per) }

	nm := r.uint(left(2))
	prev := ""
	for i := uint64(0); i < nm && r.err == nil; i++ {
		node := r.string(maxNodeLen, true)
		if i > 0 && node <= prev {
			r.fail("members out of order")
		}
		prev = node
		ne := r.uint(maxEndpoints)
		if r.err == nil && ne == 0 {
			r.fail("member with no endpoints")
		}
		eps := make([]string, 0, min(ne, left(2)))
		for j := uint64(0); j < ne && r.err == nil; j++ {
			eps = append(eps, r.string(maxEndpointLen, true))
		}
		s.members[node] = eps
	}

	ns := r.uint(left(26))
	var prevID SessionID
	for i := uint64(0); i < ns && r.err == nil; i++ {
		ss := &session{}
		r.fixed(ss.id[:])
		r.fixed(ss.secret[:])
		ss.ttl = time.Duration(r.int())
		ss.named = r.bool()
		ss.identity = r.string(maxIdentityLen, false)
		if r.err == nil && (ss.id == SessionID{} || (i > 0 && bytes.Compare(ss.id[:], prevID[:]) <= 0)) {
			r.fail("sessions out of order or zero id")
		}
		prevID = ss.id
		s.sessions[ss.id] = ss
		if ss.named {
			s.named++
		}
	}

	for kind := range s.keys {
		nk := r.uint(left(4))
		prev := ""
		for i := uint64(0); i < nk && r.err == nil; i++ {
			k := &key{kind: core.Kind(kind)}
			k.name = r.key()
			if r.err == nil && i > 0 && k.name <= prev {
				r.fail("keys out of order")
			}
			prev = k.name
			k.limit = int(r.uint(math.MaxInt32))
			if r.err == nil && (k.limit < 1 || k.kind == core.KindLock && k.limit != 1) {
				r.fail("key %q: limit %d", k.name, k.limit)
			}
			nh := r.uint(uint64(k.limit))
			for j := uint64(0); j < nh && r.err == nil; j++ {
				h := holder{token: r.token()}
				r.fixed(h.session[:])
				h.ttl = time.Duration(r.int())
				h.since = r.int()
				h.place = r.uint(math.MaxUint64)
				h.pending = r.bool()
				k.holders = append(k.holders, h)
			}
			nq := r.uint(left(12))
			for j := uint64(0); j < nq && r.err == nil; j++ {
				p := place{id: r.place()}
				r.fixed(p.session[:])
				p.ttl = time.Duration(r.int())
				p.twoPhase = r.bool()
				p.since = r.int()
				k.queue = append(k.queue, p)
			}
			if r.err == nil {
				s.keys[kind][k.name] = k
				if err := s.index(k); err != nil {
					r.fail("key %q: %v", k.name, err)
				}
			}
		}
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	if r.err == nil && s.nkeys() > math.MaxInt32 {
		r.fail("too many keys")
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

// index checks k's invariants and adds it to the derived indexes.
func (s *State) index(k *key) error {
	switch {
	case k.idle():
		return fmt.Errorf("idle key")
	case len(k.queue) > 0 && len(k.holders) < k.limit:
		return fmt.Errorf("free slot with a queue")
	}
	kr := k.ref()
	two := make(map[SessionID]bool)
	for i := range k.holders {
		h := &k.holders[i]
		f, ok := core.FenceFromToken(h.token.String())
		if !ok || f == 0 || f > s.fence {
			return fmt.Errorf("token %s beyond fence %d", h.token.String(), s.fence)
		}
		for j := range i {
			if k.holders[j].token == h.token {
				return fmt.Errorf("duplicate token")
			}
		}
		if h.session == (SessionID{}) {
			if h.pending {
				return fmt.Errorf("pending grant without a session")
			}
		} else if s.sessions[h.session] == nil {
			return fmt.Errorf("holder of unknown session %s", h.session)
		}
		if h.pending {
			if two[h.session] {
				return fmt.Errorf("two records of session %s", h.session)
			}
			two[h.session] = true
		}
		if h.place != 0 {
			if _, dup := s.places[h.place]; dup {
				return fmt.Errorf("duplicate place %d", h.place)
			}
			s.places[h.place] = struct{}{}
		}
		s.ref(h.session, kr, 1)
	}
	for i := range k.queue {
		p := &k.queue[i]
		if s.sessions[p.session] == nil {
			return fmt.Errorf("place of unknown session %s", p.session)
		}
		if p.twoPhase {
			if two[p.session] {
				return fmt.Errorf("two records of session %s", p.session)
			}
			two[p.session] = true
		}
		if _, dup := s.places[p.id]; dup {
			return fmt.Errorf("duplicate place %d", p.id)
		}
		s.places[p.id] = struct{}{}
		s.ref(p.session, kr, 1)
	}
	return nil
}

// ErrSnapshot is wrapped by every Restore error.
var ErrSnapshot = errors.New("cluster: bad snapshot")
