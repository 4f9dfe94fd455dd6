// Package core is the dflockd engine: locks, semaphores, leases, FIFO
// queues and two-phase acquires. It does no I/O and knows nothing of the
// wire protocol; the server package maps requests onto it.
//
// # Model
//
// A key lives in one of two namespaces (KindLock, KindSemaphore) and is a
// resource with a limit (1 for locks), a set of holders (token, owner,
// lease expiry) and a FIFO queue of waiters. Capacity freed by a release,
// an expiry or a disconnect always goes to the head of the queue first; a
// newcomer never overtakes a queued waiter. Tokens are 32 hex characters:
// a server-wide increasing fence (16) followed by random salt (16), so a
// later grant always carries a greater token.
//
// # Keys
//
// The engine never retains a key string it is given: it stores its own
// copy when it creates a key. Callers may therefore pass strings that
// alias reusable buffers (the server does, to decode without allocating),
// as long as the bytes do not change during the call.
//
// # Concurrency and what locks
//
// Keys live in an xsync.MapOf per namespace. A resource's mutable fields
// are guarded by its own mutex, resource.mu.
//
//   - Acquire or release of an existing key, uncontended: a lock-free map
//     Load, then resource.mu taken and released without contention (one
//     CAS each way), the token (an atomic fence increment plus a
//     per-P sync.Pool of crypto/rand bytes, encoded into a Token value),
//     and an update of the caller's Owner set (not shared). No global
//     lock and no allocation. An acquire reads the monotonic clock once;
//     a release with nobody waiting reads none (last-activity times, used
//     only by idle-key GC, come from a coarse engine clock refreshed by
//     every exact reading and by Run).
//   - Creating a key: one bucket-level Compute that reserves a slot in the
//     global key counter (an atomic) and inserts, so MaxKeys is exact. The
//     new resource is locked inside that Compute (its mutex is not yet
//     shared, so this never blocks): no collector can delete it before its
//     first holder or waiter is in place.
//   - Creating a key at MaxKeys: reclaim collects every idle key on the
//     spot, as CollectIdle does, under reclaimer.mu (one collection at a
//     time; callers that queued behind one reuse its result) and not again
//     until a gap of 16× its duration (1 ms to 1 s) has passed, then the
//     insert is retried once.
//   - Contended keys (the slow path): waiters are queued under
//     resource.mu; a waiter blocks on its own one-slot channel, never on a
//     lock. A key with waiters registers its earliest lease expiry in the
//     deadline heap (expiryHeap.mu, a global mutex taken only on this slow
//     path) so Run hands an expired lease on within milliseconds. The
//     heap holds one entry per key; a renew that makes the key's
//     earliest end sooner moves that entry.
//   - Sweep, CollectIdle, Stats and Metrics iterate the maps with Range
//     (lock-free) and take each resource.mu in turn.
//   - Metrics counting (metrics.go) takes no lock: grants, releases and
//     wait times are atomic adds to the Owner of the connection involved
//     (its own memory), expiries and disconnect releases (rare) atomic
//     adds to engine-wide counters.
//   - Inspect looks one key up (lock-free Load) and holds its
//     resource.mu while it copies the holders and the head of the queue
//     (at most its max of each); it changes nothing.
//   - CollectIdle deletes inside a bucket-level Compute and only takes
//     resource.mu there with TryLock, so no callback ever blocks.
//
// Lock order: reclaimer.mu → map bucket (Compute) → resource.mu (TryLock
// only, or Lock of a resource not yet in the map) ; reclaimer.mu →
// resource.mu ; resource.mu → expiryHeap.mu. Nothing takes reclaimer.mu
// while holding another lock. No code holds two resource mutexes at once,
// and nothing takes a bucket lock while holding resource.mu.
//
// # Waiters and cancellation
//
// A waiter's state moves once from waiting to granted or done, always
// under resource.mu. The granter sets granted and sends on the waiter's
// one-slot channel (it cannot block). A waiter that times out or is
// cancelled takes resource.mu: if still waiting it leaves the queue; if a
// grant got there first it drains the channel and either keeps the lease
// (timeout) or releases it to the next waiter (cancellation), so no grant
// is ever lost to a departed client.
//
// # Signals
//
// Pub/sub lives beside the locks and shares no lock with them: Subscribe,
// Unsubscribe and Signal use the subscription table described at the top
// of sublist.go (an xsync map for literal channels, a token trie for
// wildcard patterns, copy-on-write queue groups and a bounded match
// cache). Signal never calls a Subscriber while holding a lock.
//
// # Invariants
//
//   - len(holders) <= limit, always.
//   - queue.live counts exactly the queued waiters in state waiting.
//   - A dead (collected) resource is never mutated; callers that find one
//     look the key up again.
//   - Owner maps are touched only by the owner's goroutine; other
//     goroutines change waiters' atomic state, nothing else of an Owner.
package core
