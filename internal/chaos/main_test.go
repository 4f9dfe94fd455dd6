package chaos

import (
	"os"
	"testing"

	"github.com/dflockd/dflockd/internal/testcluster"

	"github.com/dflockd/dflockd/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, testcluster.IgnoreStrandedFutures)) }
