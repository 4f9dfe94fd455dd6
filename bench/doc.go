// Package bench measures a dflockd server the way §10 of the protocol
// reference describes: concurrent workers, each on its own persistent
// connections, run a fixed number of timed operations after an unmeasured
// warm-up, and the run reports throughput and latency percentiles.
//
// Beyond the 1.x tool it has modes for semaphores, two-phase acquires,
// single-key hand-offs and pub/sub fan-out, request pipelining, every
// transport, an in-process matrix over transports and worker counts, and
// an echo baseline: a server that answers every request with a fixed line
// and does no work, run over the same transport with the same client
// code, so that "efficiency = dflockd ops/s ÷ echo ops/s" tells how close
// the server comes to what the transport itself allows.
//
// Latencies go into an HDR histogram per worker (merged at the end), so a
// run's memory does not grow with its length; mean, min, max and the
// sample standard deviation are computed exactly alongside.
package bench
