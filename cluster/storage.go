package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// Storage is a node's durable raft state under its data directory: the
// log and the stable store (term, vote) in a raft-wal write-ahead log
// under wal/, and snapshots under snapshots/ (the library's
// FileSnapshotStore).
//
// raft-wal checks the CRC of the segment it is appending to when it
// recovers (a torn tail after a crash is cut back to the last complete
// batch), but reads sealed segments without checking them: a flipped
// byte there would be served as if it were the entry. So every entry
// carries a checksum of its own (checkedLog), and OpenStorage reads the
// whole log once and refuses to start on a corrupt entry, naming it.
type Storage struct {
	// Log is the raft.LogStore, checksummed.
	Log raft.LogStore
	// Stable is the raft.StableStore (current term, vote).
	Stable raft.StableStore
	// Snapshots is the raft.SnapshotStore.
	Snapshots *raft.FileSnapshotStore

	wal  *wal.WAL
	meta *metadb.BoltMetaDB
}

// SnapshotsRetained is how many snapshots a node keeps on disk.
const SnapshotsRetained = 2

// SegmentSize is the size of a WAL segment file (raft-wal's default).
const SegmentSize = 64 << 20

// OpenStorage opens (creating if needed) the raft storage in dir.
// segmentSize 0 means SegmentSize. A log that cannot be recovered is an
// error naming what is wrong: it is never silently truncated past a
// committed entry. Close it with Close.
func OpenStorage(dir string, segmentSize int, logger hclog.Logger) (*Storage, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if segmentSize <= 0 {
		segmentSize = SegmentSize
	}
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	// The WAL's own Close does not close its meta store (raft-wal
	// v0.4.0), whose file lock would then block a reopen in the same
	// process: own it here and close it after the WAL.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize),
		wal.WithLogger(logger.Named("wal")), wal.WithSegmentFiler(cutTailFiler{segment.NewFiler(walDir, fs.New())}))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("cluster: open the raft log in %s: %w", walDir, err)
	}
	st := &Storage{Log: checkedLog{w}, Stable: w, wal: w, meta: meta}
	if err := st.verify(walDir); err != nil {
		_ = st.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, SnapshotsRetained, logger.Named("snapshots"))
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("cluster: open the snapshot store in %s: %w", dir, err)
	}
	st.Snapshots = snaps
	return st, nil
}

// verify reads every entry of the log once, checking its checksum.
func (s *Storage) verify(walDir string) error {
	first, err := s.Log.FirstIndex()
	if err != nil {
		return fmt.Errorf("cluster: raft log in %s: %w", walDir, err)
	}
	last, err := s.Log.LastIndex()
	if err != nil {
		return fmt.Errorf("cluster: raft log in %s: %w", walDir, err)
	}
	if last == 0 {
		return nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := s.Log.GetLog(i, &l); err != nil {
			return fmt.Errorf("cluster: raft log in %s (entries %d..%d): %w; refusing to start on a damaged log: "+
				"restore this node's data dir from a backup, or remove it and add the node back to the cluster "+
				"(docs/cluster.md)", walDir, first, last, err)
		}
	}
	return nil
}

// Close closes the log, then its meta store.
func (s *Storage) Close() error {
	return errors.Join(s.wal.Close(), s.meta.Close())
}

// cutTailFiler is raft-wal's own segment filer, except that it can read a
// segment sealed by a tail truncation. raft-wal v0.4.0, when raft clears a
// log suffix (a follower holding entries a new leader does not have),
// marks the tail segment sealed in its metadata without writing the
// segment's index block (hashicorp/raft-wal#31, fixed upstream after
// v0.4.0): such a segment, committed entries included, could not be read
// after a restart ("sealed segment has no index block"). It is opened
// instead as raft-wal opens a tail after a crash, by scanning its frames,
// which rebuilds the index in memory; the metadata bounds which of its
// entries the log serves.
type cutTailFiler struct{ *segment.Filer }

// Open opens a sealed segment for reading.
func (f cutTailFiler) Open(info types.SegmentInfo) (types.SegmentReader, error) {
	if info.IndexStart == 0 && !info.SealTime.IsZero() {
		return f.Filer.RecoverTail(info)
	}
	return f.Filer.Open(info)
}

// HasState reports whether the storage holds raft state already (a node
// that has run before): such a node ignores bootstrap settings.
func (s *Storage) HasState() (bool, error) {
	return raft.HasExistingState(s.Log, s.Stable, s.Snapshots)
}

// ErrCorruptEntry is wrapped by the error of a log entry whose checksum
// does not match.
var ErrCorruptEntry = errors.New("corrupt raft log entry")

// checkedLog stores each entry's data followed by a trailer: the CRC-32C
// (Castagnoli) of the entry's index, term, type, data and extensions, and
// a format byte. GetLog checks and strips it.
type checkedLog struct{ w *wal.WAL }

const (
	trailerLen     = 5
	trailerVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entrySum(l *raft.Log, data []byte) uint32 {
	var h [17]byte
	binary.LittleEndian.PutUint64(h[0:8], l.Index)
	binary.LittleEndian.PutUint64(h[8:16], l.Term)
	h[16] = byte(l.Type)
	c := crc32.Update(0, castagnoli, h[:])
	c = crc32.Update(c, castagnoli, data)
	return crc32.Update(c, castagnoli, l.Extensions)
}

func (c checkedLog) FirstIndex() (uint64, error) { return c.w.FirstIndex() }
func (c checkedLog) LastIndex() (uint64, error)  { return c.w.LastIndex() }

// GetLog reads entry index and checks its checksum.
func (c checkedLog) GetLog(index uint64, out *raft.Log) error {
	if err := c.w.GetLog(index, out); err != nil {
		return err
	}
	n := len(out.Data) - trailerLen
	if n < 0 || out.Data[n+4] != trailerVersion || out.Index != index {
		return fmt.Errorf("entry %d: %w (no valid trailer)", index, ErrCorruptEntry)
	}
	data := out.Data[:n]
	if got, want := entrySum(out, data), binary.LittleEndian.Uint32(out.Data[n:n+4]); got != want {
		return fmt.Errorf("entry %d: %w (checksum %08x, stored %08x)", index, ErrCorruptEntry, got, want)
	}
	out.Data = data
	return nil
}

// StoreLog stores one entry.
func (c checkedLog) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries with their trailers; the callers' entries are
// not changed.
func (c checkedLog) StoreLogs(logs []*raft.Log) error {
	sealed := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = *l
		d := make([]byte, len(l.Data), len(l.Data)+trailerLen)
		copy(d, l.Data)
		d = binary.LittleEndian.AppendUint32(d, entrySum(l, l.Data))
		sealed[i].Data = append(d, trailerVersion)
		ptrs[i] = &sealed[i]
	}
	return c.w.StoreLogs(ptrs)
}

// DeleteRange deletes entries min..max.
func (c checkedLog) DeleteRange(min, max uint64) error { return c.w.DeleteRange(min, max) }

// IsMonotonic tells raft that the log only grows at its tail and is
// reset, not truncated, when a snapshot is installed (as raft-wal
// requires).
func (c checkedLog) IsMonotonic() bool { return true }
