package server

import "maps"

// Request and per-transport connection counts for `stats` (the
// `requests` and `connections_by_transport` members), kept off the hot
// path: each session counts its own requests in session.nreq, a counter
// only its goroutine writes, on a cache line no other session touches;
// nothing is shared per request. A stats answer folds the counters of the
// live sessions into the total of the sessions that have ended (retired),
// which forget adds to as each session ends. The per-transport counts
// change only when a connection opens or closes, under the server's
// mutex, which admit and forget hold anyway.

// tally is the server's part of those counts; Server.mu guards it.
type tally struct {
	retired     uint64         // requests of ended sessions
	byTransport map[string]int // open connections per transport name
}

// opened counts sess, just admitted. Server.mu is held.
func (t *tally) opened(sess *session) {
	if t.byTransport == nil {
		t.byTransport = make(map[string]int)
	}
	t.byTransport[sess.transport]++
}

// closed folds in sess, which has ended. Server.mu is held.
func (t *tally) closed(sess *session) {
	t.retired += sess.nreq.Load()
	if n := t.byTransport[sess.transport] - 1; n > 0 {
		t.byTransport[sess.transport] = n
	} else {
		delete(t.byTransport, sess.transport)
	}
}

// countRequest counts one request of sess; only its goroutine calls it.
func (sess *session) countRequest() { sess.nreq.Add(1) }

// requestCounts returns the number of requests served since the server
// started (ended sessions and live ones) and the open connections per
// transport, in a new map. It holds the server's mutex for one read of
// each live session's counter: the cost grows with the connections
// (bounded by --max-connections), not with the requests.
func (s *Server) requestCounts() (requests uint64, byTransport map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requests = s.tally.retired
	for sess := range s.sessions {
		requests += sess.nreq.Load()
	}
	byTransport = maps.Clone(s.tally.byTransport)
	if byTransport == nil {
		byTransport = map[string]int{} // JSON {}
	}
	return requests, byTransport
}
