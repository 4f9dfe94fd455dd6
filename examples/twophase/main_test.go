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
	if err := run(exampletest.Context(t), []string{"-addr", srv.Addr, "-prep", "50ms"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `first:  enqueue -> acquired
second: enqueue -> queued
third:  enqueue -> queued
first:  released
second: holds the lock (it enqueued before the third)
second: released
third:  holds the lock
third:  released
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
