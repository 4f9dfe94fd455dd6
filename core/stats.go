package core

import "math"

// Stats is a point-in-time snapshot of the engine's keys. Resources are
// classified by limit, not namespace: limit 1 is a lock. Slices are never
// nil.
type Stats struct {
	Locks          []LockStat
	Semaphores     []SemaphoreStat
	IdleLocks      []IdleStat
	IdleSemaphores []IdleStat
}

// LockStat describes a limit-1 key with a holder or waiters.
type LockStat struct {
	Key             string  `json:"key"`
	OwnerConnID     uint64  `json:"owner_conn_id"`
	LeaseExpiresInS float64 `json:"lease_expires_in_s"`
	Waiters         int     `json:"waiters"`
}

// SemaphoreStat describes a semaphore key with holders or waiters.
type SemaphoreStat struct {
	Key     string `json:"key"`
	Limit   int    `json:"limit"`
	Holders int    `json:"holders"`
	Waiters int    `json:"waiters"`
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

// Stats returns a snapshot. Each key is read under its own mutex, so the
// snapshot is consistent per key but not across keys.
func (e *Engine) Stats() Stats {
	st := Stats{
		Locks:          []LockStat{},
		Semaphores:     []SemaphoreStat{},
		IdleLocks:      []IdleStat{},
		IdleSemaphores: []IdleStat{},
	}
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
			now := e.now()
			if r.idle() {
				is := IdleStat{Key: key, IdleS: seconds(now - r.lastActive)}
				if r.limit == 1 {
					st.IdleLocks = append(st.IdleLocks, is)
				} else {
					st.IdleSemaphores = append(st.IdleSemaphores, is)
				}
				return true
			}
			if r.limit == 1 {
				ls := LockStat{Key: key, Waiters: int(r.queue.live)}
				if len(r.holders) > 0 {
					h := r.holders[0]
					if h.owner != nil {
						ls.OwnerConnID = h.owner.id
					}
					ls.LeaseExpiresInS = seconds(h.expires - now)
				}
				st.Locks = append(st.Locks, ls)
				return true
			}
			st.Semaphores = append(st.Semaphores, SemaphoreStat{
				Key: key, Limit: r.limit, Holders: len(r.holders), Waiters: int(r.queue.live),
			})
			return true
		})
	}
	return st
}
