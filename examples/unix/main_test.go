package main

import (
	"os"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/examples/internal/exampletest"
)

func TestMain(m *testing.M) { os.Exit(exampletest.Main(m)) }

func TestRun(t *testing.T) {
	srv := exampletest.Start(t, exampletest.Config{Transport: "unix"})
	var out strings.Builder
	if err := run(exampletest.Context(t), []string{"-socket", srv.Addr}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"instance 1: running backup",
		"instance 2: backup is already running elsewhere; skipping",
		"over unix",
		"lock released",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
