package cluster

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/dflockd/dflockd/core"
	"github.com/hashicorp/raft"
)

// busyState returns a state with sessions, holders, pending grants,
// queues in both namespaces, a policy and members.
func busyState(t testing.TB) *harness {
	h := newHarness(t)
	h.apply(&SetPolicy{At: h.at, Policy: Policy{MaxWaiters: 10, KeepOnDisconnect: true}})
	h.apply(&SetMember{At: h.at, Node: "n1", Endpoints: []string{"tcp://127.0.0.1:6388"}})
	a, b, c := h.open(1, true), h.open(2, false), h.open(3, true)
	h.mustGrant(a, lock, "k", 0, Queue)
	h.mustQueue(b, lock, "k", 0, Enqueue)
	h.mustQueue(c, lock, "k", 0, Queue)
	h.mustGrant(b, sem, "s", 2, Enqueue)
	h.mustGrant(c, sem, "s", 2, Queue)
	h.mustQueue(a, sem, "s", 2, Queue)
	h.mustGrant(c, lock, "kept", 0, Try)
	h.close(c)
	return h
}

func TestFSMUndecodableEntry(t *testing.T) {
	h := busyState(t)
	f := NewFSM(h.s)
	before := h.s.Snapshot()
	got := f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: []byte{commandVersion + 1, opAcquire}})
	if r, ok := got.(Result); !ok || r.Status != Undecodable || !errors.Is(r.Err(), ErrUndecodable) {
		t.Fatalf("Apply of an undecodable entry = %#v", got)
	}
	if n, err := f.Failures(); n != 1 || !strings.Contains(err.Error(), "log index 9") || !errors.Is(err, ErrCommand) {
		t.Fatalf("Failures() = %d, %v", n, err)
	}
	if !bytes.Equal(before, h.s.Snapshot()) {
		t.Fatal("an undecodable entry changed the state")
	}
	if got := f.Apply(&raft.Log{Type: raft.LogConfiguration, Data: []byte("x")}); got != nil {
		t.Fatalf("a configuration entry answered %#v", got)
	}
	out := f.ApplyBatch([]*raft.Log{{Type: raft.LogCommand, Data: nil}, {Type: raft.LogBarrier}})
	if r, _ := out[0].(Result); r.Status != Undecodable || out[1] != nil {
		t.Fatalf("ApplyBatch = %#v", out)
	}
}

type failSink struct{ memSink }

func (s *failSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFSMSnapshotPersistFailureCancels(t *testing.T) {
	f := NewFSM(busyState(t).s)
	snap, _ := f.Snapshot()
	var sink failSink
	if err := snap.Persist(&sink); err == nil || !sink.canceled || sink.closed {
		t.Fatalf("Persist to a failing sink: %v, canceled %v closed %v", err, sink.canceled, sink.closed)
	}
}

func TestRestoreRejects(t *testing.T) {
	h := busyState(t)
	good := h.s.Snapshot()
	// A fence below a holder's token, made by lowering the counter.
	lowFence := bytes.Clone(good)
	lowFence[1] = 1
	cases := map[string][]byte{
		"empty":           nil,
		"unknown version": append([]byte{snapshotVersion + 1}, good[1:]...),
		"truncated":       good[:len(good)-1],
		"trailing":        append(bytes.Clone(good), 0),
		"fence too low":   lowFence,
	}
	for name, b := range cases {
		f := NewFSM(NewState())
		f.Apply(entry(0, mustEncode(t, &OpenSession{ID: sid(5), Secret: Secret{5}})))
		before := f.State().Snapshot()
		err := f.Restore(io.NopCloser(bytes.NewReader(b)))
		if !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: Restore = %v, want ErrSnapshot", name, err)
		}
		if !bytes.Equal(before, f.State().Snapshot()) {
			t.Errorf("%s: a refused snapshot changed the state", name)
		}
	}
	// Every truncation is refused.
	for n := range len(good) {
		if err := NewState().Restore(good[:n]); err == nil {
			t.Fatalf("snapshot cut to %d/%d bytes accepted", n, len(good))
		}
	}
	s := NewState()
	if err := s.Restore(good); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Snapshot(), good) {
		t.Fatal("restore then snapshot changed the bytes")
	}
	checkInvariants(t, s)
	if si, ok := s.Session(sid(1)); !ok || si.Held != 1 || si.Queued != 1 || !si.Named {
		t.Fatalf("restored session %+v", si)
	}
}

func mustEncode(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzRestoreSnapshot: Restore never panics; what it accepts snapshots
// back to the same bytes, keeps the invariants, and takes more commands.
func FuzzRestoreSnapshot(f *testing.F) {
	f.Add(busyState(f).s.Snapshot())
	f.Add(NewState().Snapshot())
	x := newLogGen(3)
	for i := range 400 {
		x.next(f)
		if i%100 == 99 {
			f.Add(x.g.Snapshot())
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewState()
		if err := s.Restore(b); err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("Restore error %v does not wrap ErrSnapshot", err)
			}
			if !bytes.Equal(s.Snapshot(), NewState().Snapshot()) {
				t.Fatal("a refused snapshot changed the state")
			}
			return
		}
		if got := s.Snapshot(); !bytes.Equal(got, b) {
			t.Fatalf("Snapshot(Restore(%x)) = %x", b, got)
		}
		checkInvariants(t, s)
		h := &harness{t: t, s: s, at: 1, n: 1 << 62}
		for _, st := range h.s.Sessions() {
			h.acq(st.ID, lock, "k", 0, Queue)
			h.close(st.ID)
		}
		for _, hi := range h.s.Holders() {
			h.apply(&Evict{At: h.at, Seed: h.seed(), Kind: hi.Kind, Key: hi.Key, Tokens: []core.Token{hi.Token}})
		}
		if st := h.s.Stats(); st.Holders != 0 || st.Waiters != 0 || st.Sessions != 0 {
			t.Fatalf("after closing every session and evicting every holder: %+v", st)
		}
	})
}

// BenchmarkApply measures an acquire + release pair on an uncontended
// key: applied as structs to the State, and as encoded log entries to the
// FSM (decode included).
func BenchmarkApply(b *testing.B) {
	b.Run("state", func(b *testing.B) {
		h := newHarness(b)
		h.s.SetObserver(nil)
		a := h.open(1, false)
		acq := &Acquire{Session: a, Kind: lock, Key: "orders:42", Mode: Queue}
		rel := &Release{Kind: lock, Key: "orders:42"}
		b.ReportAllocs()
		for b.Loop() {
			acq.Place++
			r := h.s.Apply(acq)
			if r.Status != Granted {
				b.Fatal(r.Status)
			}
			rel.Token = r.Token
			if r := h.s.Apply(rel); r.Status != OK {
				b.Fatal(r.Status)
			}
		}
	})
	b.Run("fsm", func(b *testing.B) {
		h := newHarness(b)
		h.s.SetObserver(nil)
		f := NewFSM(h.s)
		a := h.open(1, false)
		acq := &Acquire{At: h.at, Session: a, Kind: lock, Key: "orders:42", Mode: Queue}
		rel := &Release{At: h.at, Kind: lock, Key: "orders:42"}
		var buf []byte
		l := &raft.Log{Type: raft.LogCommand}
		b.ReportAllocs()
		for b.Loop() {
			acq.Place++
			buf, _ = AppendCommand(buf[:0], acq)
			l.Data = buf
			r := f.Apply(l).(Result)
			if r.Status != Granted {
				b.Fatal(r.Status)
			}
			rel.Token = r.Token
			buf, _ = AppendCommand(buf[:0], rel)
			l.Data = buf
			if r := f.Apply(l).(Result); r.Status != OK {
				b.Fatal(r.Status)
			}
		}
	})
}

// TestQueriesBesideApply runs every query and snapshots while a log
// applies (run with -race).
func TestQueriesBesideApply(t *testing.T) {
	log := testLog(t, 9, 1500)
	f := NewFSM(NewState())
	s := f.State()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, h := range s.Holders() {
					s.Holder(h.Kind, h.Key, h.Token)
					s.Inspect(h.Kind, h.Key)
				}
				for _, si := range s.Sessions() {
					s.Session(si.ID)
					s.Record(si.ID, lock, "a")
				}
				s.Stats()
				s.Keys(sem)
				s.Members()
				if err := NewState().Restore(s.Snapshot()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < len(log); i += 16 {
		batch := make([]*raft.Log, 0, 16)
		for j := i; j < min(i+16, len(log)); j++ {
			batch = append(batch, entry(j, log[j]))
		}
		f.ApplyBatch(batch)
	}
	close(done)
	wg.Wait()
}
