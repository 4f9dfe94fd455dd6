package cluster

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/hashicorp/raft"
)

// logGen makes a random but plausible command log: it applies what it
// makes to its own State so that releases, evictions, cancels and parks
// mostly name live tokens and places (and sometimes stale or bogus ones).
type logGen struct {
	r      *rand.Rand
	g      *State
	at     int64
	n      uint64
	places []placeRef
}

type placeRef struct {
	kind  core.Kind
	key   string
	place uint64
}

var genKeys = []string{"a", "b", "c", "orders:1", "orders:2"}

func newLogGen(seed uint64) *logGen {
	return &logGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), g: NewState(), at: 1_764_000_000_000_000_000}
}

func (x *logGen) seed() (s Seed) {
	binary.LittleEndian.PutUint64(s[:8], x.r.Uint64())
	binary.LittleEndian.PutUint64(s[8:], x.r.Uint64())
	return s
}

func (x *logGen) session() SessionID { return sid(byte(1 + x.r.IntN(10))) }

func (x *logGen) key() (core.Kind, string) {
	return core.Kind(x.r.IntN(2)), genKeys[x.r.IntN(len(genKeys))]
}

func (x *logGen) token() (core.Kind, string, core.Token) {
	hs := x.g.Holders()
	if len(hs) == 0 || x.r.IntN(10) == 0 {
		k, key := x.key()
		s := x.seed()
		return k, key, makeToken(x.r.Uint64N(x.g.Fence()+2), &s) // bogus or stale
	}
	h := hs[x.r.IntN(len(hs))]
	return h.Kind, h.Key, h.Token
}

func (x *logGen) knownPlace() placeRef {
	if len(x.places) == 0 {
		k, key := x.key()
		return placeRef{k, key, 1}
	}
	// Recent places are likelier to be live.
	i := len(x.places) - 1 - x.r.IntN(min(len(x.places), 30))
	return x.places[i]
}

// next returns the encoded next command, already applied to x.g.
func (x *logGen) next(t testing.TB) []byte {
	x.at += int64(x.r.IntN(50)) * int64(time.Millisecond)
	var c Command
	switch p := x.r.IntN(100); {
	case p < 8:
		n := byte(1 + x.r.IntN(10))
		secret := Secret{n}
		if x.r.IntN(20) == 0 {
			secret[1] = 1 // another secret: session_exists when the id is live
		}
		c = &OpenSession{At: x.at, ID: sid(n), Secret: secret, TTL: time.Duration(x.r.IntN(30)) * sec, Named: x.r.IntN(2) == 0, Identity: []string{"", "alice", "bob"}[x.r.IntN(3)]}
	case p < 11:
		c = &CloseSession{At: x.at, Seed: x.seed(), ID: x.session()}
	case p < 52:
		k, key := x.key()
		limit := 1 + len(key)%3
		if x.r.IntN(15) == 0 {
			limit = x.r.IntN(4)
		}
		x.n++
		place := x.n
		if x.r.IntN(50) == 0 {
			place = x.knownPlace().place // reused: place_in_use, mostly
		}
		c = &Acquire{At: x.at, Seed: x.seed(), Session: x.session(), Kind: k, Key: key, Limit: limit,
			TTL: time.Duration(x.r.IntN(3)) * 10 * sec, Mode: Mode(x.r.IntN(3)), Place: place}
		x.places = append(x.places, placeRef{k, key, place})
	case p < 64:
		k, key, tok := x.token()
		c = &Release{At: x.at, Seed: x.seed(), Kind: k, Key: key, Token: tok}
	case p < 74:
		pr := x.knownPlace()
		c = &Cancel{At: x.at, Seed: x.seed(), Kind: pr.kind, Key: pr.key, Place: pr.place, KeepGrant: x.r.IntN(2) == 0}
	case p < 80:
		k, key := x.key()
		id := x.session()
		for _, h := range x.g.Holders() {
			if h.Pending && x.r.IntN(2) == 0 {
				k, key, id = h.Kind, h.Key, h.Session
			}
		}
		c = &Collect{At: x.at, Session: id, Kind: k, Key: key}
	case p < 84:
		pr := x.knownPlace()
		c = &Park{At: x.at, Seed: x.seed(), Kind: pr.kind, Key: pr.key, Place: pr.place}
	case p < 92:
		k, key, tok := x.token()
		toks := []core.Token{tok}
		for _, h := range x.g.Holders() {
			if h.Kind == k && h.Key == key && h.Token != tok && x.r.IntN(2) == 0 {
				toks = append(toks, h.Token)
			}
		}
		c = &Evict{At: x.at, Seed: x.seed(), Kind: k, Key: key, Tokens: toks}
	case p < 94:
		k, key, tok := x.token()
		c = &Retime{At: x.at, Kind: k, Key: key, Token: tok, TTL: time.Duration(1+x.r.IntN(3)) * 10 * sec}
	case p < 96:
		c = &SetPolicy{At: x.at, Policy: Policy{DefaultTTL: time.Duration(x.r.IntN(3)) * sec, MaxKeys: 4 + x.r.IntN(8),
			MaxWaiters: x.r.IntN(4), MaxSessions: []int{0, 0, 5, 9}[x.r.IntN(4)], KeepOnDisconnect: x.r.IntN(3) == 0}}
	default:
		var eps []string
		for range x.r.IntN(3) {
			eps = append(eps, []string{"tcp://127.0.0.1:6388", "tls://[::1]:6390", "unix:///tmp/d"}[x.r.IntN(3)])
		}
		c = &SetMember{At: x.at, Node: []string{"n1", "n2", "n3"}[x.r.IntN(3)], Endpoints: eps}
	}
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("Encode(%#v): %v", c, err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	x.g.Apply(d)
	return b
}

// testLog returns n encoded commands from seed.
func testLog(t testing.TB, seed uint64, n int) [][]byte {
	x := newLogGen(seed)
	log := make([][]byte, n)
	for i := range log {
		log[i] = x.next(t)
	}
	return log
}

// logSize is the length of the random logs: CI-sized unless
// DFLOCKD_CLUSTER_LONG is set.
func logSize() (n int, seeds int) {
	if os.Getenv("DFLOCKD_CLUSTER_LONG") != "" {
		return 100_000, 20
	}
	return 3000, 2
}

// recordingFSM is an FSM whose observer records every grant.
func recordingFSM() (*FSM, *[]Grant) {
	var gs []Grant
	s := NewState()
	s.SetObserver(func(g Grant) { gs = append(gs, g) })
	return NewFSM(s), &gs
}

func entry(i int, b []byte) *raft.Log {
	return &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: b}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, canceled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.canceled = true; return nil }

func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("Persist: %v (closed %v)", err, sink.closed)
	}
	return sink.Bytes()
}

// runDeterminism applies log three ways and compares: one by one, in
// batches (with other entry types mixed in), and restored from a snapshot
// taken half way then continued.
func runDeterminism(t *testing.T, log [][]byte, batchSeed uint64) {
	a, ga := recordingFSM()
	resA := make([]any, len(log))
	for i, b := range log {
		resA[i] = a.Apply(entry(i, b))
		checkInvariants(t, a.State())
	}

	bf, gb := recordingFSM()
	r := rand.New(rand.NewPCG(batchSeed, 1))
	var resB []any
	for i := 0; i < len(log); {
		n := min(1+r.IntN(64), len(log)-i)
		batch := make([]*raft.Log, 0, n+1)
		for j := i; j < i+n; j++ {
			batch = append(batch, entry(j, log[j]))
		}
		batch = append(batch, &raft.Log{Type: raft.LogNoop}) // not a command: answered nil
		out := bf.ApplyBatch(batch)
		if len(out) != len(batch) || out[len(out)-1] != nil {
			t.Fatalf("ApplyBatch answered %d results, last %v", len(out), out[len(out)-1])
		}
		resB = append(resB, out[:n]...)
		i += n
	}
	if !reflect.DeepEqual(resA, resB) {
		for i := range resA {
			if !reflect.DeepEqual(resA[i], resB[i]) {
				t.Fatalf("entry %d: Apply %+v, ApplyBatch %+v", i, resA[i], resB[i])
			}
		}
	}
	if !reflect.DeepEqual(*ga, *gb) {
		t.Fatalf("observers saw different grants (%d and %d)", len(*ga), len(*gb))
	}
	snapA, snapB := persist(t, a), persist(t, bf)
	if !bytes.Equal(snapA, snapB) {
		t.Fatalf("snapshots differ: %d and %d bytes", len(snapA), len(snapB))
	}

	// A snapshot half way, persisted after more entries were applied (it
	// is by value), restored into a fresh FSM that then applies the rest.
	half := len(log) / 2
	c, _ := recordingFSM()
	for i, b := range log[:half] {
		c.Apply(entry(i, b))
	}
	want := c.State().Snapshot()
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := half; i < len(log); i++ {
		c.Apply(entry(i, log[i]))
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("a persisted snapshot changed with entries applied after it was taken")
	}
	d, gd := recordingFSM()
	d.Apply(entry(0, log[0])) // state to be replaced
	if err := d.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	*gd = nil
	for i := half; i < len(log); i++ {
		if got := d.Apply(entry(i, log[i])); !reflect.DeepEqual(got, resA[i]) {
			t.Fatalf("after restore, entry %d answered %+v, want %+v", i, got, resA[i])
		}
	}
	if !bytes.Equal(persist(t, d), snapA) {
		t.Fatal("restore + rest of the log differs from the whole log")
	}
	if n, err := a.Failures(); n != 0 {
		t.Fatalf("%d entries failed to decode: %v", n, err)
	}
}

func TestDeterminism(t *testing.T) {
	n, seeds := logSize()
	for seed := range uint64(seeds) {
		log := testLog(t, seed+1, n)
		runDeterminism(t, log, seed)
	}
}

// TestRandomLogExercisesEverything guards the generator: a log that never
// grants to a queue, cancels a raced grant or parks would prove little.
func TestRandomLogExercisesEverything(t *testing.T) {
	n, _ := logSize()
	statuses := map[string]int{}
	// Count results by replaying the log on a fresh state.
	s := NewState()
	grants := 0
	s.SetObserver(func(Grant) { grants++ })
	for _, b := range testLog(t, 1, n) {
		c, _ := Decode(b)
		r := s.Apply(c)
		key := reflect.TypeOf(c).Elem().Name() + "/" + r.Status.String()
		statuses[key]++
	}
	for _, want := range []string{"Acquire/granted", "Acquire/queued", "Acquire/timeout", "Acquire/max_waiters",
		"Acquire/limit_mismatch", "Acquire/already_enqueued", "Acquire/no_session", "Acquire/max_keys",
		"Release/ok", "Release/not_holder", "Cancel/canceled", "Cancel/granted", "Collect/granted",
		"Park/queued", "Park/granted", "Evict/ok", "CloseSession/ok", "OpenSession/session_exists"} {
		if statuses[want] == 0 {
			t.Errorf("the random log never gives %s (%v)", want, statuses)
		}
	}
	t.Logf("results: %v", statuses)
	if grants <= statuses["Acquire/granted"] {
		t.Errorf("no grant to a queued place: %d grants, %d immediate", grants, statuses["Acquire/granted"])
	}
	if s.Fence() == 0 || s.Fence() != uint64(grants) {
		t.Errorf("fence %d after %d grants", s.Fence(), grants)
	}
}

// TestApplyReadsNoClockOrRandom replaces the package's clock and random
// source with functions that panic, then runs the whole determinism check.
func TestApplyReadsNoClockOrRandom(t *testing.T) {
	n, _ := logSize()
	log := testLog(t, 42, n)
	oldNow, oldRead := timeNow, randRead
	t.Cleanup(func() { timeNow, randRead = oldNow, oldRead })
	timeNow = func() time.Time { panic("cluster: apply read the clock") }
	randRead = func([]byte) (int, error) { panic("cluster: apply read the random source") }
	// The trap works: Stamp, the leader's helper, does trip it.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Stamp did not read the replaced clock and random source")
			}
		}()
		Stamp()
	}()
	runDeterminism(t, log, 7)
}

func TestStamp(t *testing.T) {
	at1, s1 := Stamp()
	at2, s2 := Stamp()
	if s1 == s2 || s1 == (Seed{}) {
		t.Fatalf("seeds %x %x", s1, s2)
	}
	if d := time.Since(time.Unix(0, at1)); d < 0 || d > time.Minute || at2 < at1 {
		t.Fatalf("stamps %d %d", at1, at2)
	}
}
