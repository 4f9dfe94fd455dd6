// Package cluster is dflockd's replicated mode: the state machine that
// hashicorp/raft replicates, and the binary encoding of its log entries.
// (The raft node, the leader loop and relaying build on it.)
//
// # The state
//
// State holds what every replica must agree on: the fence counter,
// sessions (id, secret, TTL, named or the implicit session of an unnamed
// connection, identity), keys in the lock and semaphore namespaces (limit,
// holders, FIFO queue of places), the policy that changes what apply does
// (default TTL, max keys, max waiters, max sessions, keep-on-disconnect)
// and each member's client endpoints. The semantics are core's: a free
// slot with nobody queued is taken at once, else the request queues at
// the tail (or a try-lock times out); freed slots go to the queue head
// first; tokens are 16 hex characters of a strictly increasing fence and
// 16 of salt.
//
// One difference from core: a key with no holders and no places is
// deleted at once, so its limit is forgotten as soon as it is idle (core
// keeps an idle key, and its limit, until idle-key GC). Keeping idle keys
// would need a replicated GC decision for no gain.
//
// # The rules
//
// Apply is a pure function of (state, command): it reads no clock and no
// random source. Every command carries At, the leader's clock (unix
// nanos) when it proposed it, and every command that may grant carries a
// Seed the leader drew; a token's salt is the first 8 bytes of
// SHA-256(seed || fence), so replicas compute the same tokens and
// clients cannot predict them. Stamp is the package's only reader of a
// clock or of randomness, for the leader. Where apply visits several keys
// (closing a session) it visits them in a fixed order, so grants take
// fences in the same order everywhere. Snapshots are encoded with every
// map sorted, so equal states give equal bytes.
//
// Lease and session expiry are decided by the leader, which alone runs
// timers: it proposes Evict naming the exact tokens (idempotent; it can
// never hit a newer holder) and CloseSession naming the session.
//
// # What is a log entry
//
// Logged: OpenSession (a connection's implicit session, or naming it),
// CloseSession, Acquire (try, queue or enqueue), Release, Cancel (a
// blocked request timed out or was abandoned; a grant that raced in is
// kept or passed on, never leaked), Collect, Park, Evict, SetPolicy,
// SetMember.
//
// Not logged: renewals (the leader resets its lease timer; leases are
// lower bounds that a new leader re-arms at full length), a wait on a
// queued place (the leader learns of the grant through the Observer,
// which it installs with SetObserver; followers run without one), stats,
// inspect, pub/sub, resume (a read of the session plus leader-local
// attachment).
//
// Collect is logged although the design note lists "wait on an
// already-granted place" among what is not: a two-phase grant carries a
// pending mark until `w` collects it, and that mark decides later answers
// on every replica (a second `e` for the key is error_already_enqueued
// while it is set; a new leader must know whether a `w` has already
// consumed it). The cost is one entry per `w` that collects a grant; a `w`
// that finds its place still queued writes nothing until the grant.
//
// Park is an addition to the commands the issue lists: it turns the queue
// place of a blocked `l`/`sl` of a named session whose connection dropped
// into a two-phase place, as the session extension asks.
package cluster
