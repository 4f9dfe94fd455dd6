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
	if err := run(exampletest.Context(t), []string{"-addr", srv.Addr, "-workers", "3", "-jobs", "9"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	// Round-robin spreads the jobs evenly.
	for _, want := range []string{"worker 0 handled 3 jobs", "worker 1 handled 3 jobs", "worker 2 handled 3 jobs", "the auditor saw 9 jobs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
