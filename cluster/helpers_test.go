package cluster

import (
	"encoding/binary"
	"maps"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

const (
	lock = core.KindLock
	sem  = core.KindSemaphore
	sec  = time.Second
)

// harness drives a State through the encoding, with a fake leader clock,
// counter seeds and place ids, and records what the observer is told.
type harness struct {
	t      testing.TB
	s      *State
	at     int64
	n      uint64
	grants []Grant
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, s: NewState(), at: 1_700_000_000_000_000_000}
	h.s.SetObserver(func(g Grant) { h.grants = append(h.grants, g) })
	return h
}

func (h *harness) seed() (s Seed) {
	h.n++
	binary.BigEndian.PutUint64(s[:], h.n)
	return s
}

func (h *harness) place() uint64 { h.n++; return h.n }

// apply encodes c, decodes it and applies the copy, checking the state's
// invariants afterwards.
func (h *harness) apply(c Command) Result {
	h.t.Helper()
	h.at += int64(time.Millisecond)
	b, err := Encode(c)
	if err != nil {
		h.t.Fatalf("Encode(%#v): %v", c, err)
	}
	d, err := Decode(b)
	if err != nil {
		h.t.Fatalf("Decode(Encode(%#v)): %v", c, err)
	}
	if !reflect.DeepEqual(c, d) {
		h.t.Fatalf("Decode(Encode(c)) = %#v, want %#v", d, c)
	}
	r := h.s.Apply(d)
	checkInvariants(h.t, h.s)
	return r
}

func sid(n byte) SessionID { return SessionID{0, 0, 0, 0, 0, 0, 0, n} }

func (h *harness) open(n byte, named bool) SessionID {
	h.t.Helper()
	id := sid(n)
	if r := h.apply(&OpenSession{At: h.at, ID: id, Secret: Secret{n}, TTL: 15 * sec, Named: named}); r.Status != OK {
		h.t.Fatalf("OpenSession(%d) = %v", n, r.Status)
	}
	return id
}

func (h *harness) close(id SessionID) Result {
	h.t.Helper()
	return h.apply(&CloseSession{At: h.at, Seed: h.seed(), ID: id})
}

// acq proposes an Acquire with a fresh place.
func (h *harness) acq(id SessionID, k core.Kind, key string, limit int, mode Mode) Result {
	h.t.Helper()
	return h.apply(&Acquire{At: h.at, Seed: h.seed(), Session: id, Kind: k, Key: key, Limit: limit, TTL: 10 * sec, Mode: mode, Place: h.place()})
}

func (h *harness) mustGrant(id SessionID, k core.Kind, key string, limit int, mode Mode) Result {
	h.t.Helper()
	r := h.acq(id, k, key, limit, mode)
	if r.Status != Granted {
		h.t.Fatalf("Acquire(%s %q, %v) = %v, want granted", k, key, mode, r.Status)
	}
	return r
}

func (h *harness) mustQueue(id SessionID, k core.Kind, key string, limit int, mode Mode) uint64 {
	h.t.Helper()
	r := h.acq(id, k, key, limit, mode)
	if r.Status != Queued || r.Place == 0 {
		h.t.Fatalf("Acquire(%s %q, %v) = %+v, want queued", k, key, mode, r)
	}
	return r.Place
}

func (h *harness) release(k core.Kind, key string, tok core.Token) Result {
	h.t.Helper()
	return h.apply(&Release{At: h.at, Seed: h.seed(), Kind: k, Key: key, Token: tok})
}

func (h *harness) mustRelease(k core.Kind, key string, tok core.Token) {
	h.t.Helper()
	if r := h.release(k, key, tok); r.Status != OK {
		h.t.Fatalf("Release(%s %q) = %v", k, key, r.Status)
	}
}

// takeGrants returns and forgets the grants observed so far.
func (h *harness) takeGrants() []Grant {
	g := h.grants
	h.grants = nil
	return g
}

// holderOf returns the token held by sid on key (exactly one expected).
func (h *harness) holderOf(id SessionID, k core.Kind, key string) core.Token {
	h.t.Helper()
	ki, ok := h.s.Inspect(k, key)
	if !ok {
		h.t.Fatalf("key %s %q does not exist", k, key)
	}
	var found []core.Token
	for _, ho := range ki.Holders {
		if ho.Session == id {
			found = append(found, ho.Token)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("session %s holds %d slots of %q, want 1", id, len(found), key)
	}
	return found[0]
}

func (h *harness) counts(k core.Kind, key string) (holders, waiters int) {
	ki, _ := h.s.Inspect(k, key)
	return len(ki.Holders), len(ki.Queue)
}

// checkInvariants re-reads s from its own snapshot (which validates
// holders <= limit, no free slot beside a queue, no idle key, sessions
// referenced exist, unique places and tokens, tokens within the fence) and
// checks that the derived indexes s keeps equal the ones rebuilt.
func checkInvariants(t testing.TB, s *State) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, err := decodeSnapshot(s.appendSnapshot(nil))
	if err != nil {
		t.Fatalf("state fails its own snapshot validation: %v", err)
	}
	if !maps.Equal(n.places, s.places) {
		t.Fatalf("place index %v, rebuilt %v", s.places, n.places)
	}
	if n.named != s.named {
		t.Fatalf("named sessions %d, rebuilt %d", s.named, n.named)
	}
	for id, ss := range s.sessions {
		if !maps.Equal(ss.refs, n.sessions[id].refs) {
			t.Fatalf("session %s refs %v, rebuilt %v", id, ss.refs, n.sessions[id].refs)
		}
	}
}
