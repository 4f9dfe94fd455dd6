package cluster

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM adapts a State to hashicorp/raft: it implements raft.FSM and
// raft.BatchingFSM.
//
// Apply answers a Result for a command entry and nil for any other entry
// type. An entry that does not decode (written by a newer version, say)
// changes nothing and answers Result{Status: Undecodable}; it is counted
// (Failures) so that the node can stop serving rather than run on with a
// state its peers may not share.
type FSM struct {
	state *State

	mu       sync.Mutex // guards the two fields below
	failures uint64
	lastErr  error
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// NewFSM returns an FSM over s.
func NewFSM(s *State) *FSM { return &FSM{state: s} }

// State returns the state the FSM applies to.
func (f *FSM) State() *State { return f.state }

// Failures returns how many entries did not decode, and the last error.
func (f *FSM) Failures() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures, f.lastErr
}

func (f *FSM) fail(l *raft.Log, err error) Result {
	f.mu.Lock()
	f.failures++
	f.lastErr = fmt.Errorf("log index %d: %w", l.Index, err)
	f.mu.Unlock()
	return Result{Status: Undecodable}
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := Decode(l.Data)
	if err != nil {
		return f.fail(l, err)
	}
	return f.state.Apply(c)
}

// ApplyBatch applies committed entries in order under one write lock;
// the results are the ones Apply would give one by one.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	cmds := make([]Command, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := Decode(l.Data)
		if err != nil {
			out[i] = f.fail(l, err)
			continue
		}
		cmds[i] = c
	}
	s := f.state
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range cmds {
		if c != nil {
			out[i] = s.apply(c)
		}
	}
	return out
}

// Snapshot copies the state by value (its encoded bytes) under the read
// lock; Persist then writes those bytes while later entries apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot(f.state.Snapshot()), nil
}

// Restore replaces the state with a snapshot written by Persist. A
// snapshot that does not validate leaves the state unchanged.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cluster: reading snapshot: %w", err)
	}
	return f.state.Restore(b)
}

// snapshot is an encoded state.
type snapshot []byte

// Persist writes the snapshot to sink and closes it, or cancels it on error.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: writing snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("cluster: closing snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the bytes are the snapshot's own.
func (snapshot) Release() {}
