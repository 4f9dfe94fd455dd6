package core

import "time"

// KeyInfo is what Inspect reports about one key: its limit, its holders
// and its queue. Lists are never nil.
type KeyInfo struct {
	// Key and Kind name the resource.
	Key  string
	Kind Kind
	// Limit is the number of slots (1 for a lock).
	Limit int
	// Holders lists holders of live leases, in no particular order.
	Holders []HolderInfo
	// Waiters lists queued places in FIFO order: the first is served next.
	Waiters []WaiterInfo
	// HoldersTotal and WaitersTotal count every holder and queued place,
	// listed or not.
	HoldersTotal int
	WaitersTotal int
}

// Truncated reports whether a list of ki is shorter than its total.
func (ki *KeyInfo) Truncated() bool {
	return len(ki.Holders) < ki.HoldersTotal || len(ki.Waiters) < ki.WaitersTotal
}

// HolderInfo describes one granted slot. It never carries the token, only
// its fence (see FenceFromToken), which is not enough to release or renew.
type HolderInfo struct {
	// Fence is the fencing number of the slot's token.
	Fence uint64
	// OwnerID is the id of the Owner that acquired the slot (0 = none).
	OwnerID uint64
	// Tag is that Owner's tag (see NewOwnerWithTag), or nil.
	Tag any
	// LeaseLeft is how long the lease has to run unless renewed.
	LeaseLeft time.Duration
	// HeldFor is how long ago the slot was granted.
	HeldFor time.Duration
	// Enqueued marks a slot granted to a two-phase acquire (e/se) that
	// its owner has not claimed with w/sw yet.
	Enqueued bool
}

// WaiterInfo describes one queued place.
type WaiterInfo struct {
	// OwnerID is the id of the waiting Owner (0 = none).
	OwnerID uint64
	// Tag is that Owner's tag, or nil.
	Tag any
	// Waiting is how long ago the place joined the queue.
	Waiting time.Duration
	// Enqueued marks a two-phase place (e/se): its owner may or may not
	// be blocked in w/sw right now. Otherwise the owner is blocked in
	// l/sl.
	Enqueued bool
}

// Inspect reports the state of key in namespace k: its limit, up to max
// holders and up to max waiters in FIFO order (max < 0: all), and the
// totals. ok is false when the key does not exist (never used, or
// collected as idle). Leases that have run out but are not yet handed on
// are not listed.
//
// Inspect takes only the key's own mutex, and holds it while it walks
// the holders and the first max waiters; it changes nothing.
func (e *Engine) Inspect(k Kind, key string, max int) (ki KeyInfo, ok bool) {
	r, _ := e.lockResource(k, key, 0, false)
	if r == nil {
		return KeyInfo{}, false
	}
	defer r.mu.Unlock()
	now := e.now()
	room := func(n int) bool { return max < 0 || n < max }
	ki = KeyInfo{Key: r.key, Kind: r.kind, Limit: r.limit}
	ki.Holders = make([]HolderInfo, 0, capFor(len(r.holders), max))
	for i := range r.holders {
		h := &r.holders[i]
		if h.expires <= now {
			continue
		}
		ki.HoldersTotal++
		if !room(len(ki.Holders)) {
			continue
		}
		hi := HolderInfo{
			Fence:     h.token.fence(),
			LeaseLeft: time.Duration(h.expires - now),
			HeldFor:   time.Duration(max0(now - h.since)),
			Enqueued:  h.rec != nil,
		}
		if h.owner != nil {
			hi.OwnerID, hi.Tag = h.owner.id, h.owner.tag
		}
		ki.Holders = append(ki.Holders, hi)
	}
	ki.WaitersTotal = int(r.queue.live)
	ki.Waiters = make([]WaiterInfo, 0, capFor(ki.WaitersTotal, max))
	for _, w := range r.queue.items[r.queue.head:] {
		if !room(len(ki.Waiters)) {
			break
		}
		if w.state.Load() != stateWaiting {
			continue
		}
		wi := WaiterInfo{Waiting: time.Duration(max0(now - w.since)), Enqueued: w.twoPhase}
		if w.owner != nil {
			wi.OwnerID, wi.Tag = w.owner.id, w.owner.tag
		}
		ki.Waiters = append(ki.Waiters, wi)
	}
	return ki, true
}

// capFor is the capacity for a list of n entries capped at max (< 0: no
// cap).
func capFor(n, max int) int {
	if max >= 0 && n > max {
		return max
	}
	return n
}

func max0(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

// fence returns the fencing number in t's first 16 hex characters.
func (t *Token) fence() uint64 {
	var v uint64
	for _, c := range t[:16] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		}
		v = v<<4 | uint64(d)
	}
	return v
}
