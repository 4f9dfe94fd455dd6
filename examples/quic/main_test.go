package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/examples/internal/exampletest"
)

func TestMain(m *testing.M) { os.Exit(exampletest.Main(m)) }

func TestRun(t *testing.T) {
	srv := exampletest.Start(t, exampletest.Config{Transport: "quic", MutualTLS: true})
	args := []string{
		"-addr", srv.Addr,
		"-ca", filepath.Join(srv.CertDir, "ca.pem"),
		"-cert", filepath.Join(srv.CertDir, "client.pem"),
		"-key", filepath.Join(srv.CertDir, "client-key.pem"),
		"-sessions", "3",
	}
	var out strings.Builder
	if err := run(exampletest.Context(t), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"hold 3 locks as 3 distinct server connections", "released every session's lock"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
