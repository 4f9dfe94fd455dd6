package cluster

import (
	"os"
	"testing"

	"github.com/dflockd/dflockd/internal/leakcheck"
)

// TestMain fails a passing run if any goroutine outlives the tests.
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
