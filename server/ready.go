package server

import (
	"errors"
	"fmt"
)

// errDraining is Ready's answer once Shutdown has begun.
var errDraining = errors.New("server: draining")

// errNoListener is Ready's answer while no listener is being served.
var errNoListener = errors.New("server: not serving any listener")

// listenerState is what Ready knows about one listener's accept loop.
// Its fields are guarded by Server.mu; the accept loop writes them only
// when Accept fails, so a healthy loop never takes the mutex for it.
type listenerState struct {
	name string // transport://address, as in the reasons Ready gives
	// acceptErr is the error of the last Accept while the loop backs off
	// after it; nil while the loop accepts.
	acceptErr error
}

// Ready reports whether the server is ready for new connections: it is
// not draining or closed, it serves at least one listener, every
// listener's accept loop is running and none is backing off after a failed
// Accept, and no listener's accept loop has ended on its own (its listener
// closed by someone else: the server no longer serves it). The error names
// the first reason found, in one line, e.g. "server: draining" or
// "server: listener tcp://127.0.0.1:6388 is not accepting: accept: too
// many open files". Ready takes the server's mutex briefly and never
// touches the request path; it is meant for a readiness probe.
func (s *Server) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrServerClosed
	case s.draining.Load():
		return errDraining
	case len(s.stopped) > 0:
		return errors.New(s.stopped[0])
	case len(s.listeners) == 0:
		return errNoListener
	}
	var failing *listenerState
	for _, st := range s.listeners {
		if st.acceptErr != nil && (failing == nil || st.name < failing.name) {
			failing = st // the first by name, so the answer is stable
		}
	}
	if failing != nil {
		return fmt.Errorf("server: listener %s is not accepting: %w", failing.name, failing.acceptErr)
	}
	if rep := s.opts.Replica; rep != nil {
		// Replicated mode: raft running and a leader known (a follower
		// relays to it).
		if err := rep.Ready(); err != nil {
			return err
		}
	}
	return nil
}

// acceptFailing records that st's accept loop is backing off after err,
// or (err == nil) that it is about to accept again.
func (s *Server) acceptFailing(st *listenerState, err error) {
	s.mu.Lock()
	st.acceptErr = err
	s.mu.Unlock()
}

// acceptStopped records that st's accept loop ended on its own with err
// (not by Shutdown or Close): the server stays unready from then on.
func (s *Server) acceptStopped(st *listenerState, err error) {
	s.mu.Lock()
	s.stopped = append(s.stopped, fmt.Sprintf("server: listener %s stopped: %v", st.name, err))
	s.mu.Unlock()
}
