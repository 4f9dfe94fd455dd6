package chaos

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/dflockd/dflockd/internal/leakcheck"
)

// strandedFuture is the goroutine cluster.Replica.await leaves waiting on
// a proposal that raft never answers (one left in its buffered apply
// channel when the node is killed): it stays until the process exits, as
// await documents.
const strandedFuture = "github.com/dflockd/dflockd/cluster.(*Replica).await.func1"

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, goleak.IgnoreAnyFunction(strandedFuture))) }
