package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func openStorage(t testing.TB, dir string, seg int) *Storage {
	t.Helper()
	s, err := OpenStorage(dir, seg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func walEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 100)}
}

func storeEntries(t testing.TB, s *Storage, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := s.Log.StoreLogs([]*raft.Log{walEntry(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// segments returns the WAL's segment files in order.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func TestStorageReopens(t *testing.T) {
	dir := t.TempDir()
	s := openStorage(t, dir, 0)
	if has, err := s.HasState(); err != nil || has {
		t.Fatalf("fresh storage HasState = %v, %v", has, err)
	}
	storeEntries(t, s, 1, 100)
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStorage(t, dir, 0) // the same process: the meta store was closed
	defer s.Close()
	if has, err := s.HasState(); err != nil || !has {
		t.Fatalf("HasState = %v, %v", has, err)
	}
	first, _ := s.Log.FirstIndex()
	last, _ := s.Log.LastIndex()
	if first != 1 || last != 100 {
		t.Fatalf("indexes %d..%d; want 1..100", first, last)
	}
	var l raft.Log
	if err := s.Log.GetLog(50, &l); err != nil || !bytes.Equal(l.Data, walEntry(50).Data) {
		t.Fatalf("GetLog(50) = %v, data %d bytes", err, len(l.Data))
	}
	if v, err := s.Stable.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("CurrentTerm = %d, %v", v, err)
	}
}

// StoreLogs does not change the caller's entries (raft keeps them).
func TestCheckedLogLeavesEntriesAlone(t *testing.T) {
	s := openStorage(t, t.TempDir(), 0)
	defer s.Close()
	l := walEntry(1)
	data := l.Data
	if err := s.Log.StoreLogs([]*raft.Log{l}); err != nil {
		t.Fatal(err)
	}
	if len(l.Data) != 100 || &l.Data[0] != &data[0] {
		t.Fatal("StoreLogs changed the caller's entry")
	}
}

// A segment cut short mid-write (a crash) is recovered up to the last
// complete write; every entry left reads back intact.
func TestStorageTornTailRecovers(t *testing.T) {
	dir := t.TempDir()
	s := openStorage(t, dir, 8<<10)
	storeEntries(t, s, 1, 300)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	tail := segs[len(segs)-1]
	b, err := os.ReadFile(tail)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 { // segments are preallocated: find the data's end
		end--
	}
	clear(b[end-60 : end]) // the last write never reached the disk whole
	if err := os.WriteFile(tail, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStorage(t, dir, 8<<10)
	defer s.Close()
	last, _ := s.Log.LastIndex()
	if last != 299 {
		t.Fatalf("last index after the torn write = %d; want 299", last)
	}
	var l raft.Log
	for i := uint64(1); i <= last; i++ {
		if err := s.Log.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, walEntry(i).Data) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

// A flipped byte in a sealed segment (which raft-wal reads without a
// check) is found when the node opens its storage, and it refuses to
// start, naming the entry, rather than serve a damaged entry.
func TestStorageCorruptSealedSegmentRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStorage(t, dir, 8<<10)
	storeEntries(t, s, 1, 300)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments; want sealed ones", len(segs))
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[2000] ^= 0x01
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenStorage(dir, 8<<10, nil)
	if !errors.Is(err, ErrCorruptEntry) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("OpenStorage on a corrupt sealed segment = %v; want ErrCorruptEntry and a refusal", err)
	}
	t.Log(err)
	// The refusal released the files: a repaired directory opens again.
	b[2000] ^= 0x01
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStorage(t, dir, 8<<10)
	s.Close()
}

// A follower whose log tail is cut back (raft clears a suffix that a new
// leader does not have) must restart: raft-wal v0.4.0 marks the cut
// segment sealed without writing its index block (hashicorp/raft-wal#31),
// and its committed entries could then not be read back.
func TestStorageReopensAfterTailTruncation(t *testing.T) {
	dir := t.TempDir()
	s := openStorage(t, dir, 0)
	storeEntries(t, s, 1, 20)
	if err := s.Log.DeleteRange(16, 20); err != nil {
		t.Fatal(err)
	}
	for i := uint64(16); i <= 30; i++ { // the new leader's entries
		if err := s.Log.StoreLogs([]*raft.Log{newTermEntry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStorage(t, dir, 0)
	var l raft.Log
	for i := uint64(1); i <= 30; i++ {
		if err := s.Log.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want := walEntry(i)
		if i >= 16 {
			want = newTermEntry(i)
		}
		if !bytes.Equal(l.Data, want.Data) || l.Term != want.Term {
			t.Fatalf("entry %d: data %x, want %x", i, l.Data, want.Data)
		}
	}
	// And again, with the cut segment now behind the tail.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStorage(t, dir, 0)
	defer s.Close()
	if last, _ := s.Log.LastIndex(); last != 30 {
		t.Fatalf("last index %d after a second reopen, want 30", last)
	}
	if err := s.Log.GetLog(10, &l); err != nil {
		t.Fatalf("entry 10 after a second reopen: %v", err)
	}
}

func newTermEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i), 2}, 60)}
}
