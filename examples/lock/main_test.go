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
	if err := run(exampletest.Context(t), []string{"-addr", srv.Addr, "-work", "10ms"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{`acquired "examples.lock"`, "second client is turned away", "work done", "released"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
