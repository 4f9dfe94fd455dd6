package main

import (
	"os"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/examples/internal/exampletest"
)

func TestMain(m *testing.M) { os.Exit(exampletest.Main(m)) }

func TestRun(t *testing.T) {
	srv := exampletest.Start(t, exampletest.Config{})
	var out strings.Builder
	args := []string{"-addr", srv.Addr, "-limit", "2", "-workers", "4", "-work", "50ms"}
	if err := run(exampletest.Context(t), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), ": working ("); n != 4 {
		t.Errorf("%d workers worked, want 4:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "all 4 workers done") {
		t.Errorf("output:\n%s", out.String())
	}
}
