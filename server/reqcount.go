package server

// requestCounts returns, for `stats`, the number of requests served since
// the server started (the `requests` member; authentication excluded) and
// the open connections per transport (`connections_by_transport`). Both
// come from the counters the metrics keep (metrics.go): the per-command
// rows of the live sessions, folded into those of the ended ones, so
// nothing beyond the metrics is counted per request. The request being
// answered (the caller's `stats`) is counted only when its dispatch ends,
// so it is added here: the answer counts itself. It holds the server's
// mutex for one visit per live session: the cost grows with the
// connections (bounded by --max-connections), not with the requests.
func (s *Server) requestCounts() (requests uint64, byTransport map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.met.retired.cmds {
		requests += sumStatuses(&s.met.retired.cmds[c].status)
	}
	byTransport = map[string]int{} // JSON {} when there are none
	for sess := range s.sessions {
		byTransport[sess.transport]++
		for c := range sess.m.rows {
			if row := sess.m.rows[c].Load(); row != nil {
				for i := range row.status {
					requests += row.status[i].Load()
				}
			}
		}
	}
	return requests + 1, byTransport
}

// sumStatuses adds up one command's counts by status.
func sumStatuses(st *[metricStatuses]uint64) (n uint64) {
	for _, v := range st {
		n += v
	}
	return n
}
