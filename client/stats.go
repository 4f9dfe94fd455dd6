package client

// Stats is the decoded answer to "stats" (§5). Every slice is empty, not
// nil, when the server sent an empty array. A dflockd server lists at most
// --stats-max-items entries in each slice (1000 by default): Totals then
// says how many there are and Truncated is true.
type Stats struct {
	// Connections is the number of open connections, including those
	// still authenticating.
	Connections int `json:"connections"`
	// Locks lists the keys of limit 1 that have a holder or waiters.
	Locks []LockStat `json:"locks"`
	// Semaphores lists the keys of limit > 1 that have holders or
	// waiters.
	Semaphores []SemaphoreStat `json:"semaphores"`
	// IdleLocks and IdleSemaphores list keys with neither holders nor
	// waiters, awaiting garbage collection.
	IdleLocks      []IdleStat `json:"idle_locks"`
	IdleSemaphores []IdleStat `json:"idle_semaphores"`
	// SignalChannels lists the signal subscriptions.
	SignalChannels []ChannelStat `json:"signal_channels"`
	// SlowConsumers counts listeners the server closed because they did
	// not read their signals (a dflockd extension; 0 from 1.x servers).
	SlowConsumers uint64 `json:"slow_consumers"`
	// Clients lists the open connections (a dflockd extension; empty from
	// 1.x servers).
	Clients []ClientStat `json:"clients"`
	// Requests counts the requests the server has served since it
	// started, authentication excluded (a dflockd extension; 0 from
	// servers that do not send it). Two samples give a request rate.
	Requests uint64 `json:"requests"`
	// ConnectionsByTransport counts the open connections per transport
	// name (a dflockd extension; nil from servers that do not send it).
	ConnectionsByTransport map[string]int `json:"connections_by_transport"`
	// Sessions counts the named sessions with a connection and
	// DetachedSessions those whose connection was lost, kept for a resume
	// (the session extension; 0 from servers that do not send them).
	Sessions         int `json:"sessions"`
	DetachedSessions int `json:"detached_sessions"`
	// Totals counts the entries of each list, listed or not (a dflockd
	// extension; nil from servers that do not send it, which list
	// everything).
	Totals *StatsTotals `json:"totals,omitempty"`
	// Truncated is true when some list holds fewer entries than its
	// total (a dflockd extension).
	Truncated bool `json:"truncated"`
}

// StatsTotals counts the entries of each list of Stats before the server's
// cap; the names match the lists.
type StatsTotals struct {
	Locks          int `json:"locks"`
	Semaphores     int `json:"semaphores"`
	IdleLocks      int `json:"idle_locks"`
	IdleSemaphores int `json:"idle_semaphores"`
	SignalChannels int `json:"signal_channels"`
	Clients        int `json:"clients"`
}

// LockStat describes one lock key in Stats.
type LockStat struct {
	Key string `json:"key"`
	// OwnerConnID is the server's id of the holder's connection; 0 when
	// the key has waiters but no holder.
	OwnerConnID uint64 `json:"owner_conn_id"`
	// LeaseExpiresInS is the holder's remaining lease, in seconds.
	LeaseExpiresInS float64 `json:"lease_expires_in_s"`
	// Waiters is the queue length.
	Waiters int `json:"waiters"`
	// HeldS is how long the holder has held the key, in seconds (a
	// dflockd extension; 0 without a holder or from servers that do not
	// send it).
	HeldS float64 `json:"held_s"`
}

// SemaphoreStat describes one semaphore key in Stats.
type SemaphoreStat struct {
	Key     string `json:"key"`
	Limit   int    `json:"limit"`
	Holders int    `json:"holders"`
	Waiters int    `json:"waiters"`
	// HeldS is how long the longest-standing holder has held its slot,
	// in seconds (a dflockd extension; 0 without holders or from servers
	// that do not send it).
	HeldS float64 `json:"held_s"`
}

// IdleStat describes one idle key in Stats.
type IdleStat struct {
	Key string `json:"key"`
	// IdleS is the time since the key's last activity, in seconds.
	IdleS float64 `json:"idle_s"`
}

// ChannelStat describes one signal subscription pattern (and queue group)
// in Stats.
type ChannelStat struct {
	Pattern string `json:"pattern"`
	// Group is the queue group, empty for plain listeners.
	Group string `json:"group,omitempty"`
	// Listeners is the number of subscribed connections or group members.
	Listeners int `json:"listeners"`
}

// ClientStat describes one open connection in Stats.
type ClientStat struct {
	ID        uint64 `json:"id"`
	Transport string `json:"transport"`
	Remote    string `json:"remote"`
	Identity  string `json:"identity"`
	// Name is the name the connection gave itself (Options.Name), ""
	// if none.
	Name string `json:"name"`
}
