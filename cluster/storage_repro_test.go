package cluster

import "testing"

// Found by `bench --cluster 3 --failover 5`: raft-wal v0.4.0 marked the
// tail segment sealed when raft cleared a log suffix (a deposed leader's
// uncommitted entries, after a leader kill and restart) without writing
// its index block (hashicorp/raft-wal#31, fixed in v0.4.1 by #33). The
// next start of that node failed: "sealed segment has no index block",
// and OpenStorage refused the log as damaged.
func TestStorageReopensAfterTailTruncation(t *testing.T) {
	dir := t.TempDir()
	s := openStorage(t, dir, 0)
	storeEntries(t, s, 1, 10)
	if err := s.Log.DeleteRange(9, 10); err != nil { // raft: "clearing log suffix"
		t.Fatal(err)
	}
	storeEntries(t, s, 9, 12)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStorage(dir, 0, nil)
	if err != nil {
		t.Fatalf("reopen after a tail truncation: %v", err)
	}
	s2.Close()
}
