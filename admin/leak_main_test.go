package admin

import (
	"os"
	"testing"

	"github.com/dflockd/dflockd/internal/leakcheck"
)

// TestMain fails a passing run if any goroutine outlives the tests
// (go.uber.org/goleak, retried patiently by leakcheck).
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
