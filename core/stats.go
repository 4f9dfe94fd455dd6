package core

import "math"

// Stats is a point-in-time snapshot of the engine's keys. Resources are
// classified by limit, not namespace: limit 1 is a lock. Slices are never
// nil. A snapshot taken with a listing cap (StatsUpTo) lists an arbitrary
// subset of each kind; Totals always counts every key.
type Stats struct {
	Locks          []LockStat
	Semaphores     []SemaphoreStat
	IdleLocks      []IdleStat
	IdleSemaphores []IdleStat
	// Totals counts the keys of each kind, listed or not.
	Totals KeyTotals
}

// KeyTotals counts keys by kind; the names match the Stats lists.
type KeyTotals struct {
	Locks          int `json:"locks"`
	Semaphores     int `json:"semaphores"`
	IdleLocks      int `json:"idle_locks"`
	IdleSemaphores int `json:"idle_semaphores"`
}

// Truncated reports whether some list of st holds fewer entries than its
// total.
func (st *Stats) Truncated() bool {
	return len(st.Locks) < st.Totals.Locks || len(st.Semaphores) < st.Totals.Semaphores ||
		len(st.IdleLocks) < st.Totals.IdleLocks || len(st.IdleSemaphores) < st.Totals.IdleSemaphores
}

// LockStat describes a limit-1 key with a holder or waiters.
type LockStat struct {
	Key             string  `json:"key"`
	OwnerConnID     uint64  `json:"owner_conn_id"`
	LeaseExpiresInS float64 `json:"lease_expires_in_s"`
	Waiters         int     `json:"waiters"`
	// HeldS is how long the holder has held the key, in seconds (0
	// without a holder).
	HeldS float64 `json:"held_s"`
}

// SemaphoreStat describes a semaphore key with holders or waiters.
type SemaphoreStat struct {
	Key     string `json:"key"`
	Limit   int    `json:"limit"`
	Holders int    `json:"holders"`
	Waiters int    `json:"waiters"`
	// HeldS is how long the longest-standing holder has held its slot,
	// in seconds (0 without holders).
	HeldS float64 `json:"held_s"`
}

// IdleStat describes a key with neither holders nor waiters, awaiting GC.
type IdleStat struct {
	Key   string  `json:"key"`
	IdleS float64 `json:"idle_s"`
}

func seconds(nanos int64) float64 {
	if nanos < 0 {
		return 0
	}
	return math.Round(float64(nanos)/1e6) / 1e3
}

// Stats returns a snapshot listing every key.
func (e *Engine) Stats() Stats {
	var st Stats
	e.StatsUpTo(&st, -1)
	return st
}

// StatsUpTo fills st with a snapshot that lists at most limit keys of each
// kind (lock, semaphore, idle lock, idle semaphore); a negative limit
// lists all. Every key is still visited to count Totals, but nothing is
// stored for keys past the limit, so the cost is one short visit per key
// (the key count is capped by Options.MaxKeys) plus the listed entries.
// Each key is read under its own mutex, so the snapshot is consistent per
// key but not across keys; no lock is held across keys.
//
// The lists of st are truncated and reused, so a caller that keeps one
// Stats between calls allocates nothing once they have grown; nil lists
// become empty ones.
func (e *Engine) StatsUpTo(st *Stats, limit int) {
	*st = Stats{
		Locks:          emptied(st.Locks),
		Semaphores:     emptied(st.Semaphores),
		IdleLocks:      emptied(st.IdleLocks),
		IdleSemaphores: emptied(st.IdleSemaphores),
	}
	room := func(n int) bool { return limit < 0 || n < limit }
	for _, m := range e.ns {
		m.Range(func(key string, r *resource) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.dead {
				return true
			}
			// The clock is read under the key's lock: a lease granted
			// after a clock reading taken before the walk would otherwise
			// look longer than it is.
			if r.idle() {
				if r.limit == 1 {
					st.Totals.IdleLocks++
					if room(len(st.IdleLocks)) {
						st.IdleLocks = append(st.IdleLocks, IdleStat{Key: key, IdleS: seconds(e.now() - r.lastActive)})
					}
				} else {
					st.Totals.IdleSemaphores++
					if room(len(st.IdleSemaphores)) {
						st.IdleSemaphores = append(st.IdleSemaphores, IdleStat{Key: key, IdleS: seconds(e.now() - r.lastActive)})
					}
				}
				return true
			}
			if r.limit == 1 {
				st.Totals.Locks++
				if !room(len(st.Locks)) {
					return true
				}
				ls := LockStat{Key: key, Waiters: int(r.queue.live)}
				if len(r.holders) > 0 {
					h := r.holders[0]
					if h.owner != nil {
						ls.OwnerConnID = h.owner.id
					}
					now := e.now()
					ls.LeaseExpiresInS = seconds(h.expires - now)
					ls.HeldS = seconds(now - h.since)
				}
				st.Locks = append(st.Locks, ls)
				return true
			}
			st.Totals.Semaphores++
			if room(len(st.Semaphores)) {
				ss := SemaphoreStat{Key: key, Limit: r.limit, Holders: len(r.holders), Waiters: int(r.queue.live)}
				if len(r.holders) > 0 {
					oldest := r.holders[0].since
					for _, h := range r.holders[1:] {
						oldest = min(oldest, h.since)
					}
					ss.HeldS = seconds(e.now() - oldest)
				}
				st.Semaphores = append(st.Semaphores, ss)
			}
			return true
		})
	}
}

// emptied returns s with length 0, or an empty non-nil slice for nil.
func emptied[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s[:0]
}
