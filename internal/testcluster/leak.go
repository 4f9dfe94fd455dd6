package testcluster

import "go.uber.org/goleak"

// IgnoreStrandedFutures is the leakcheck option for packages whose tests
// kill cluster nodes: a proposal left in raft's buffered apply channel
// when a node shuts down is never answered, and cluster.Replica's wait on
// it leaves a goroutine that stays until the process exits (see
// Replica.await). It ignores only that goroutine.
var IgnoreStrandedFutures = goleak.IgnoreAnyFunction("github.com/dflockd/dflockd/cluster.(*Replica).await.func1")
