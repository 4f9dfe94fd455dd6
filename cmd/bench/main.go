// Command bench measures a dflockd server: lock, semaphore, two-phase,
// single-key hand-off and pub/sub throughput and latency, over any
// transport, with an optional echo baseline and a one-command matrix.
//
//	bench [--workers 10] [--rounds 50] [--servers 127.0.0.1:6388] [--mode lock] ...
//	bench --matrix --baseline echo [--report BENCH.md]
//	bench memory --server-bin ./dflockd
//	bench --cluster 3 --mode lock,handoff,semaphore --cluster-workers 1,16,64,128 --cluster-memory
//	bench --cluster 3 --mode lock --workers 16 --failover 5 --plot DIR
//
// --cluster N starts N dflockd processes as a replicated cluster
// (temporary data dirs, loopback) and measures through the leader and
// through a follower; --failover kills the leader during a run and checks
// that no result was lost or duplicated; --plot DIR draws charts.
//
// A run prints the block of §10 of the protocol reference followed by the
// README's table row; --json prints the result as JSON instead. Exit
// status: 0 success, 1 the run failed ("worker N error: ..."), 2 invalid
// flags ("bench: <reason>").
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
